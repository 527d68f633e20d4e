// The C ABI (bindings/c/include/cloudmgr.h) over cloudmgr::Manager.
//
// Every exported function runs its body through call(), which turns a C++ exception into
// CM_INTERNAL and records failures in the thread's last error. Handles are checked against a
// registry of live objects before they are touched, so a NULL, freed or foreign handle is an
// error, not a crash.
#include "cloudmgr.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cloudmgr/cloudmgr.h"
#include "json.h"  // tools/common: the JSON forms cloudctl --json prints

namespace {

using cloudmgr::Status;
using cloudmgr::StatusCode;

// The C ABI's version: incremented with every function or struct field added.
constexpr std::uint32_t kAbiVersion = 3;

// ---- the thread's last error ----------------------------------------------------------------

thread_local cm_status t_status = CM_OK;
thread_local std::string t_error;

cm_status fail(cm_status status, std::string text) {
  t_status = status;
  t_error = std::move(text);
  return status;
}

cm_status to_c(StatusCode code) { return static_cast<cm_status>(code); }

// Records a failed Status under the function's name; CM_OK passes through.
cm_status check(const char* fn, const Status& s) {
  if (s.ok()) {
    return CM_OK;
  }
  return fail(to_c(s.code()), std::string(fn) + ": " + s.message());
}

// Runs `body`, turning an exception into CM_INTERNAL naming the function.
template <typename F>
cm_status call(const char* fn, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(CM_RESOURCE_EXHAUSTED, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(CM_INTERNAL, std::string(fn) + ": unexpected error: " + e.what());
  } catch (...) {
    return fail(CM_INTERNAL, std::string(fn) + ": unexpected error");
  }
}

// ---- the registry of live objects -----------------------------------------------------------

enum class Kind : std::uint8_t {
  kConfig,
  kManager,
  kHostList,
  kGroupList,
  kVmList,
  kResult,
  kSampleList,
  kHostSample,
  kSubscription,
  kHistory,
  kHistorySeries,
  kTemplateList,
  kCreateResult,
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kConfig:
      return "cm_config";
    case Kind::kManager:
      return "cm_manager";
    case Kind::kHostList:
      return "cm_host_list";
    case Kind::kGroupList:
      return "cm_group_list";
    case Kind::kVmList:
      return "cm_vm_list";
    case Kind::kResult:
      return "cm_result";
    case Kind::kSampleList:
      return "cm_sample_list";
    case Kind::kHostSample:
      return "cm_host_sample";
    case Kind::kSubscription:
      return "cm_subscription";
    case Kind::kHistory:
      return "cm_history";
    case Kind::kHistorySeries:
      return "cm_history_series";
    case Kind::kTemplateList:
      return "cm_template_list";
    case Kind::kCreateResult:
      return "cm_create_result";
  }
  return "handle";
}

struct Entry {
  Kind kind;
  void* owner;    // the object behind a struct view (cm_host_sample, cm_history_series)
  bool freeable;  // false for objects borrowed from another (a history's result)
};

class Registry {
 public:
  void add(const void* p, Kind k, void* owner = nullptr, bool freeable = true) {
    std::lock_guard lock(mu_);
    live_[p] = Entry{k, owner, freeable};
  }
  void remove(const void* p) {
    std::lock_guard lock(mu_);
    live_.erase(p);
  }
  std::optional<Entry> find(const void* p, Kind k) const {
    std::lock_guard lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end() || it->second.kind != k) {
      return std::nullopt;
    }
    return it->second;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<const void*, Entry> live_;
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: handles may be freed from atexit handlers
  return *r;
}

// CM_OK when `p` is a live object of kind `k`; otherwise the error, naming `param`.
cm_status need(const char* fn, const char* param, const void* p, Kind k) {
  if (p == nullptr) {
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": " + param + " is NULL");
  }
  if (!registry().find(p, k)) {
    return fail(CM_INVALID_ARGUMENT,
                std::string(fn) + ": " + param + " is not a live " + kind_name(k) + " (freed, or never made)");
  }
  return CM_OK;
}

cm_status need_out(const char* fn, const void* out) {
  if (out == nullptr) {
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": out is NULL");
  }
  return CM_OK;
}

// A C string parameter: NULL is refused naming it (unless `optional`), and so is text that is
// not UTF-8.
cm_status need_text(const char* fn, const char* param, const char* text, std::optional<std::string>& value,
                    bool optional = false) {
  if (text == nullptr) {
    if (optional) {
      value.reset();
      return CM_OK;
    }
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": " + param + " is NULL");
  }
  std::string_view v(text);
  // UTF-8 check: lead bytes and continuation bytes, no overlong two-byte forms.
  for (std::size_t i = 0; i < v.size();) {
    const auto c = static_cast<unsigned char>(v[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 && c >= 0xC2 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > v.size()) {
      return fail(CM_INVALID_ARGUMENT,
                  std::string(fn) + ": " + param + " is not UTF-8 (byte " + std::to_string(i) + ")");
    }
    for (std::size_t j = 1; j < n; ++j) {
      if ((static_cast<unsigned char>(v[i + j]) >> 6) != 0x2) {
        return fail(CM_INVALID_ARGUMENT,
                    std::string(fn) + ": " + param + " is not UTF-8 (byte " + std::to_string(i + j) + ")");
      }
    }
    i += n;
  }
  value = std::string(v);
  return CM_OK;
}

#define CM_TRY(expr)                          \
  do {                                        \
    if (cm_status s_ = (expr); s_ != CM_OK) { \
      return s_;                              \
    }                                         \
  } while (0)

// An object handed out through `out`: registered, then owned by the caller.
template <typename T>
cm_status hand_out(T* object, Kind k, T** out) {
  registry().add(object, k);
  *out = object;
  return CM_OK;
}

std::optional<std::vector<std::string>> split_list(std::string_view text) {
  std::vector<std::string> items;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.remove_suffix(1);
    }
    if (item.empty()) {
      return std::nullopt;
    }
    items.emplace_back(item);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  return items;
}

std::optional<std::uint64_t> parse_uint(std::string_view text) {
  std::uint64_t v = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p != end || text.empty()) {
    return std::nullopt;
  }
  return v;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") {
    return true;
  }
  if (text == "false" || text == "0" || text == "no" || text == "off") {
    return false;
  }
  return std::nullopt;
}

// The value of a C enum argument as an integer, without loading it as the enum type: C callers
// may pass any int, and in C++ a value outside the enumerators' range is undefined (UBSan's
// -fsanitize=enum stops on it).
template <typename E>
long long raw(const E& e) {
  std::underlying_type_t<E> v{};
  std::memcpy(&v, &e, sizeof v);
  return static_cast<long long>(v);
}

cm_status target_of(const char* fn, const cm_target_kind& kind_arg, const char* name, cloudmgr::Target& target) {
  std::optional<std::string> n;
  const long long kind = raw(kind_arg);
  switch (kind) {
    case CM_TARGET_HOST:
    case CM_TARGET_GROUP:
      CM_TRY(need_text(fn, "name", name, n));
      if (n->empty()) {
        return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": name is empty (a " +
                                             (kind == CM_TARGET_HOST ? "host id" : "group name") + " is needed)");
      }
      target = kind == CM_TARGET_HOST ? cloudmgr::Target::host(*n) : cloudmgr::Target::group(*n);
      return CM_OK;
    case CM_TARGET_ALL:
      if (name != nullptr && *name != '\0') {
        return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": name must be NULL or empty with CM_TARGET_ALL");
      }
      target = cloudmgr::Target::all();
      return CM_OK;
  }
  return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": kind " + std::to_string(kind) + " is not a cm_target_kind");
}

std::chrono::milliseconds timeout_of(std::uint32_t ms) { return std::chrono::milliseconds(ms); }

}  // namespace

// ---- the objects behind the handles ----------------------------------------------------------

struct cm_config {
  cloudmgr::ManagerOptions options;
};

namespace {
struct ManagerState {
  std::shared_mutex mu;  // shared: every call; unique: close
  std::unique_ptr<cloudmgr::Manager> manager;
  std::mutex subs_mu;
  std::unordered_set<cm_subscription*> subs;  // GUARDED_BY(subs_mu)
  bool closing = false;                       // GUARDED_BY(subs_mu): no new subscription
};
}  // namespace

struct cm_manager {
  std::shared_ptr<ManagerState> state = std::make_shared<ManagerState>();
};

struct cm_subscription {
  std::shared_ptr<ManagerState> state;
  std::unique_ptr<cloudmgr::Subscription> sub;  // null once the manager closed
};

namespace {
struct HostItem {
  cloudmgr::HostEntry entry;
  std::vector<const char*> groups;
  cm_host c{};
};

struct GroupItem {
  std::string name;
  std::vector<std::string> members;
  std::vector<const char*> member_ptrs;
  cm_group c{};
};

struct VmItem {
  cloudmgr::VmView view;
  std::string json;
  cm_vm c{};
};

struct ResultItem {
  cloudmgr::HostResult result;
  std::string message;
  std::string reply_json;
  cm_host_result c{};
};

struct SampleItem {
  cloudmgr::HostSample sample;
  std::vector<cm_vm_sample> vms;
  cm_host_sample c{};
};

struct SeriesItem {
  cloudmgr::HistorySeries series;
  std::vector<cm_history_point> points;
  cm_history_series c{};
};
}  // namespace

struct cm_host_list {
  std::vector<std::unique_ptr<HostItem>> items;
};
struct cm_group_list {
  std::vector<std::unique_ptr<GroupItem>> items;
};
struct cm_vm_list {
  std::vector<std::unique_ptr<VmItem>> items;
};
struct cm_result {
  std::string command_id;
  std::vector<std::unique_ptr<ResultItem>> items;
};
struct cm_sample_list {
  std::vector<std::unique_ptr<SampleItem>> items;
  ~cm_sample_list() {
    for (const auto& i : items) {
      registry().remove(&i->c);
    }
  }
};
struct cm_history {
  std::vector<std::unique_ptr<SeriesItem>> items;
  cm_result result;  // not the first member: its address must differ from the history's
  ~cm_history() {
    registry().remove(&result);
    for (const auto& i : items) {
      registry().remove(&i->c);
    }
  }
};

namespace {
struct TemplateItem {
  cloudmgr::TemplateInfo info;
  std::string ref;
  std::string format;
  std::string spec_json;
  std::string json;
  cm_template c{};
};

struct EventItem {
  cloudmgr::CloudEvent event;
  std::vector<const char*> groups;
  cm_event c{};
};
}  // namespace

struct cm_template_list {
  std::vector<std::unique_ptr<TemplateItem>> items;
};
struct cm_create_result {
  std::unique_ptr<TemplateItem> template_item;
  cm_vm_list vms;  // borrowed by the caller through cm_create_info (not the first member: its own address)
  std::vector<std::string> image_sent_to;
  std::vector<const char*> image_sent_ptrs;
  cm_create_info c{};
  ~cm_create_result() { registry().remove(&vms); }
};

namespace {

std::unique_ptr<HostItem> make_host(cloudmgr::HostEntry e) {
  auto item = std::make_unique<HostItem>();
  item->entry = std::move(e);
  const auto& v = item->entry.view;
  for (const auto& g : v.groups) {
    item->groups.push_back(g.c_str());
  }
  cm_host& c = item->c;
  c.id = v.info.id.c_str();
  c.hostname = v.info.hostname.c_str();
  c.hypervisor = v.info.hypervisor.c_str();
  c.hypervisor_version = v.info.hypervisor_version.c_str();
  c.uri = v.info.uri.c_str();
  c.agent_version = v.agent_version.c_str();
  c.state = item->entry.online() ? CM_HOST_ONLINE : CM_HOST_OFFLINE;
  c.last_seen_ns = item->entry.last_seen_ns;
  c.offline_since_ns = item->entry.offline_since_ns;
  c.agent_started_ns = v.agent_started_ns;
  c.cpus = v.info.cpu.logical_cpus;
  c.cpu_mhz = v.info.cpu.mhz;
  c.memory_bytes = v.info.memory_bytes;
  c.free_memory_bytes = v.info.free_memory_bytes;
  c.vcpus_allocated = v.info.vcpus_allocated;
  c.memory_allocated_bytes = v.info.memory_allocated_bytes;
  c.vms_defined = v.info.vms_defined;
  c.vms_active = v.info.vms_active;
  c.group_count = item->groups.size();
  c.groups = item->groups.data();
  return item;
}

std::unique_ptr<VmItem> make_vm(cloudmgr::VmView view) {
  auto item = std::make_unique<VmItem>();
  item->view = std::move(view);
  const auto& v = item->view.vm;
  nlohmann::json j = cloudmgr::tools::to_json(v);
  j["host"] = item->view.host_id;
  item->json = j.dump();
  cm_vm& c = item->c;
  c.host_id = item->view.host_id.c_str();
  c.uuid = v.uuid.c_str();
  c.name = v.name.c_str();
  c.state = static_cast<cm_vm_state>(v.state);
  c.state_reason = v.state_reason.c_str();
  c.vcpus = v.vcpus;
  c.max_vcpus = v.max_vcpus;
  c.memory_bytes = v.memory_bytes;
  c.max_memory_bytes = v.max_memory_bytes;
  c.cpu_time_ns = v.cpu_time_ns;
  c.persistent = v.persistent ? 1 : 0;
  c.autostart = v.autostart ? 1 : 0;
  c.description = v.description.c_str();
  c.template_name = v.origin.template_name.c_str();
  c.template_version = v.origin.template_version;
  c.image_sha256 = v.origin.image_sha256.c_str();
  c.json = item->json.c_str();
  c.updated_ns = item->view.updated_ns;
  return item;
}

std::string reply_json(const cloudmgr::CommandReply& reply) {
  nlohmann::json j = nlohmann::json::object();
  if (!reply.processes.empty()) {
    auto& a = j["processes"] = nlohmann::json::array();
    for (const auto& p : reply.processes) {
      a.push_back(cloudmgr::tools::to_json(p));
    }
  }
  if (!reply.snapshots.empty()) {
    auto& a = j["snapshots"] = nlohmann::json::array();
    for (const auto& s : reply.snapshots) {
      a.push_back(cloudmgr::tools::to_json(s));
    }
  }
  if (!reply.vms.empty()) {
    auto& a = j["vms"] = nlohmann::json::array();
    for (const auto& v : reply.vms) {
      a.push_back(cloudmgr::tools::to_json(v));
    }
  }
  if (!reply.audit.empty()) {
    auto& a = j["audit"] = nlohmann::json::array();
    for (const auto& e : reply.audit) {
      a.push_back(cloudmgr::tools::to_json(e));
    }
  }
  return j.dump();
}

void fill_result(cm_result& out, cloudmgr::CommandResult r) {
  out.command_id = std::move(r.command_id);
  for (auto& h : r.hosts) {
    auto item = std::make_unique<ResultItem>();
    item->result = std::move(h);
    const auto& hr = item->result;
    item->message = hr.status.ok() ? std::string() : hr.status.message();
    item->reply_json = reply_json(hr.reply);
    cm_host_result& c = item->c;
    c.host_id = hr.host_id.c_str();
    c.outcome = static_cast<cm_outcome>(hr.outcome);
    c.code = to_c(hr.status.code());
    c.message = item->message.c_str();
    c.latency_ns = hr.latency_ns;
    c.reply_json = item->reply_json.c_str();
    out.items.push_back(std::move(item));
  }
}

void fill_vm_sample(cm_vm_sample& c, const cloudmgr::VmSample& v) {
  c.uuid = v.uuid.c_str();
  c.name = v.name.c_str();
  c.state = static_cast<cm_vm_state>(v.state);
  c.vcpus = v.vcpus;
  c.rates_valid = v.rates_valid ? 1 : 0;
  c.cpu_pct = v.cpu_pct;
  c.cpu_host_pct = v.cpu_host_pct;
  c.memory_bytes = v.memory_bytes;
  c.memory_used_bytes = v.memory_used_bytes;
  c.disk_read_bytes_per_s = v.disk_read_bytes_per_s;
  c.disk_write_bytes_per_s = v.disk_write_bytes_per_s;
  c.disk_read_ops_per_s = v.disk_read_ops_per_s;
  c.disk_write_ops_per_s = v.disk_write_ops_per_s;
  c.net_rx_bytes_per_s = v.net_rx_bytes_per_s;
  c.net_tx_bytes_per_s = v.net_tx_bytes_per_s;
}

// Builds the C view of a sample (not registered: the caller registers &item->c).
std::unique_ptr<SampleItem> make_sample(cloudmgr::HostSample s) {
  auto item = std::make_unique<SampleItem>();
  item->sample = std::move(s);
  const auto& h = item->sample;
  item->vms.resize(h.vms.size());
  for (std::size_t i = 0; i < h.vms.size(); ++i) {
    fill_vm_sample(item->vms[i], h.vms[i]);
  }
  cm_host_sample& c = item->c;
  c.host_id = h.host_id.c_str();
  c.taken_ns = h.taken_ns;
  c.interval_ns = h.interval_ns;
  c.simulated = h.simulated ? 1 : 0;
  c.rates_valid = h.rates_valid ? 1 : 0;
  c.cpus = h.cpus;
  c.cpu_pct = h.cpu_pct;
  c.memory_bytes = h.memory_bytes;
  c.memory_used_bytes = h.memory_used_bytes;
  c.disk_read_bytes_per_s = h.disk_read_bytes_per_s;
  c.disk_write_bytes_per_s = h.disk_write_bytes_per_s;
  c.disk_read_ops_per_s = h.disk_read_ops_per_s;
  c.disk_write_ops_per_s = h.disk_write_ops_per_s;
  c.net_rx_bytes_per_s = h.net_rx_bytes_per_s;
  c.net_tx_bytes_per_s = h.net_tx_bytes_per_s;
  c.vm_count = item->vms.size();
  return item;
}

std::unique_ptr<TemplateItem> make_template(cloudmgr::TemplateInfo info) {
  auto item = std::make_unique<TemplateItem>();
  item->info = std::move(info);
  const auto& t = item->info;
  item->ref = t.ref().to_string();
  item->format = std::string(cloudmgr::to_string(t.image.format));
  item->spec_json = cloudmgr::template_spec_to_json(t.spec);
  item->json = cloudmgr::template_info_to_json(t);
  cm_template& c = item->c;
  c.name = t.name.c_str();
  c.version = t.version;
  c.ref = item->ref.c_str();
  c.vcpus = t.spec.vcpus;
  c.memory_bytes = t.spec.memory_bytes;
  c.description = t.spec.description.c_str();
  c.image_sha256 = t.image.sha256.c_str();
  c.image_format = item->format.c_str();
  c.image_size_bytes = t.image.size_bytes;
  c.image_virtual_size_bytes = t.image.virtual_size_bytes;
  c.created_ns = t.created_ns;
  c.origin = t.origin.c_str();
  c.spec_json = item->spec_json.c_str();
  c.json = item->json.c_str();
  return item;
}

cm_status hand_out_templates(std::vector<cloudmgr::TemplateInfo> list, cm_template_list** out) {
  auto l = std::make_unique<cm_template_list>();
  for (auto& t : list) {
    l->items.push_back(make_template(std::move(t)));
  }
  return hand_out(l.release(), Kind::kTemplateList, out);
}

void fill_event(EventItem& item) {
  const auto& e = item.event;
  for (const auto& g : e.groups) {
    item.groups.push_back(g.c_str());
  }
  cm_event& c = item.c;
  c.kind = static_cast<cm_event_kind>(e.kind);
  c.time_ns = e.time_ns;
  c.host_id = e.host_id.c_str();
  c.group_count = item.groups.size();
  c.groups = item.groups.data();
  c.vm_uuid = e.vm_uuid.c_str();
  c.vm_name = e.vm_name.c_str();
  c.old_state = static_cast<cm_vm_state>(e.old_state);
  c.state = static_cast<cm_vm_state>(e.state);
  c.reason = e.reason.c_str();
  c.lost = e.lost;
}

std::optional<double> parse_double(std::string_view text) {
  double v = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p != end || text.empty()) {
    return std::nullopt;
  }
  return v;
}

// cm_manager_create_vms's options into a request; the error names the key.
cm_status create_request(const char* fn, const cm_arg* options, std::size_t count, cloudmgr::CreateVmsRequest& r) {
  if (options == nullptr && count != 0) {
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": options is NULL with option_count " + std::to_string(count));
  }
  std::unordered_set<std::string> seen;
  bool have_template = false;
  for (std::size_t i = 0; i < count; ++i) {
    std::optional<std::string> key;
    std::optional<std::string> value;
    const std::string where = "options[" + std::to_string(i) + "]";
    CM_TRY(need_text(fn, (where + ".key").c_str(), options[i].key, key));
    CM_TRY(need_text(fn, (where + ".value").c_str(), options[i].value, value));
    const std::string& k = *key;
    const std::string& v = *value;
    auto bad = [&](const std::string& why) {
      std::string text(fn);
      text.append(": ").append(k).append(": '").append(v).append("' ").append(why);
      return fail(CM_INVALID_ARGUMENT, text);
    };
    if (!seen.insert(k).second) {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": option '" + k + "' is given twice");
    }
    if (k == "name") {
      r.name = v;
    } else if (k == "template") {
      auto ref = cloudmgr::TemplateRef::parse(v);
      CM_TRY(check(fn, ref.status()));
      r.template_ref = *ref;
      have_template = true;
    } else if (k == "host" || k == "group") {
      if (r.where) {
        return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": host and group exclude each other");
      }
      if (v.empty()) {
        return bad("is empty");
      }
      r.where = k == "host" ? cloudmgr::Target::host(v) : cloudmgr::Target::group(v);
    } else if (k == "policy") {
      auto p = cloudmgr::parse_placement_policy(v);
      CM_TRY(check(fn, p.status()));
      r.policy = *p;
    } else if (k == "count") {
      auto n = parse_uint(v);
      if (!n || *n < 1 || *n > 1000) {
        return bad("is not a count (1-1000)");
      }
      r.count = static_cast<std::uint32_t>(*n);
    } else if (k == "start") {
      auto b = parse_bool(v);
      if (!b) {
        return bad("is not true or false");
      }
      r.start = *b;
    } else if (k == "cpu_overcommit" || k == "memory_overcommit") {
      auto d = parse_double(v);
      if (!d) {
        return bad("is not a number");
      }
      (k == "cpu_overcommit" ? r.overcommit.cpu : r.overcommit.memory) = *d;
    } else if (k == "memory_reserved_bytes") {
      auto n = parse_uint(v);
      if (!n) {
        return bad("is not a number of bytes");
      }
      r.overcommit.memory_reserved_bytes = *n;
    } else if (k == "timeout_ms") {
      auto n = parse_uint(v);
      if (!n || *n == 0 || *n > 86'400'000) {
        return bad("is not a timeout in ms (1-86400000)");
      }
      r.timeout = std::chrono::milliseconds(*n);
    } else {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": unknown option '" + k +
                                           "' (name, template, host, group, policy, count, start, cpu_overcommit, "
                                           "memory_overcommit, memory_reserved_bytes, timeout_ms)");
    }
  }
  if (r.name.empty()) {
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": option 'name' is required");
  }
  if (!have_template) {
    return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": option 'template' is required");
  }
  return check(fn, r.overcommit.validate());
}

// Hands out a subscription handle, unless the manager is closing.
cm_status keep_subscription(const char* fn, cm_manager* manager, std::unique_ptr<cloudmgr::Subscription> sub,
                            cm_subscription** out) {
  auto handle = std::make_unique<cm_subscription>();
  handle->state = manager->state;
  handle->sub = std::move(sub);
  {
    std::lock_guard lock(manager->state->subs_mu);
    if (manager->state->closing) {
      return fail(CM_FAILED_PRECONDITION, std::string(fn) + ": manager is closed");
    }
    manager->state->subs.insert(handle.get());
  }
  return hand_out(handle.release(), Kind::kSubscription, out);
}

// Runs `body` with the open Manager behind `m` under the shared lock.
template <typename F>
cm_status with_manager(const char* fn, cm_manager* m, F&& body) {
  CM_TRY(need(fn, "manager", m, Kind::kManager));
  std::shared_lock lock(m->state->mu);
  if (!m->state->manager) {
    return fail(CM_FAILED_PRECONDITION, std::string(fn) + ": manager is closed");
  }
  return body(*m->state->manager);
}

// The element `index` of a list object, or NULL with the error.
template <typename List>
auto element(const char* fn, const List* list, Kind k, std::size_t index, const char* param = "list")
    -> decltype(&list->items[0]->c) {
  if (need(fn, param, list, k) != CM_OK) {
    return nullptr;
  }
  if (index >= list->items.size()) {
    fail(CM_OUT_OF_RANGE, std::string(fn) + ": index " + std::to_string(index) + " is past the end (size " +
                              std::to_string(list->items.size()) + ")");
    return nullptr;
  }
  return &list->items[index]->c;
}

template <typename List>
std::size_t size_of(const char* fn, const List* list, Kind k, const char* param = "list") {
  if (need(fn, param, list, k) != CM_OK) {
    return 0;
  }
  return list->items.size();
}

template <typename T>
void free_object(T* object, Kind k) {
  if (object == nullptr) {
    return;
  }
  auto entry = registry().find(object, k);
  if (!entry) {
    fail(CM_INVALID_ARGUMENT, std::string("free: not a live ") + kind_name(k) + " (freed twice, or never made)");
    return;
  }
  if (!entry->freeable) {
    fail(CM_INVALID_ARGUMENT, std::string("free: this ") + kind_name(k) + " belongs to another object");
    return;
  }
  registry().remove(object);
  delete object;  // NOLINT(cppcoreguidelines-owning-memory): the C ABI's ownership rule
}

}  // namespace

// =============================================================================================

extern "C" {

CM_API const char* cm_status_name(cm_status status_arg) {
  const long long status = raw(status_arg);
  if (status < CM_OK || status > CM_UNAUTHENTICATED) {
    return "INVALID_STATUS";
  }
  // status_code_name returns a view of a static NUL-terminated literal.
  return cloudmgr::status_code_name(static_cast<StatusCode>(status)).data();
}

CM_API cm_status cm_last_status(void) { return t_status; }
CM_API const char* cm_last_error(void) { return t_error.c_str(); }
CM_API void cm_clear_error(void) {
  t_status = CM_OK;
  t_error.clear();
}

CM_API const char* cm_version(void) { return cloudmgr::version().data(); }
CM_API uint32_t cm_abi_version(void) { return kAbiVersion; }

// ---- configuration ----

CM_API cm_status cm_config_new(cm_config** out) {
  return call("cm_config_new", [&] {
    CM_TRY(need_out("cm_config_new", out));
    *out = nullptr;
    return hand_out(new cm_config, Kind::kConfig, out);
  });
}

CM_API void cm_config_free(cm_config* config) {
  (void)call("cm_config_free", [&] {
    free_object(config, Kind::kConfig);
    return CM_OK;
  });
}

CM_API cm_status cm_config_set(cm_config* config, const char* key, const char* value) {
  const char* const fn = "cm_config_set";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need(fn, "config", config, Kind::kConfig));
    std::optional<std::string> k;
    std::optional<std::string> v;
    CM_TRY(need_text(fn, "key", key, k));
    CM_TRY(need_text(fn, "value", value, v));
    auto bad = [&](const std::string& why) {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": " + *k + ": '" + *v + "' " + why);
    };
    auto& o = config->options;
    auto& t = o.transport;
    if (*k == "domain") {
      auto n = parse_uint(*v);
      if (!n || *n > 232) {
        return bad("is not a DDS domain id (0-232)");
      }
      t.domain_id = static_cast<std::uint32_t>(*n);
    } else if (*k == "transport") {
      if (*v != "dds" && *v != "inproc") {
        return bad("is not a transport (dds or inproc)");
      }
      t.kind = *v;
    } else if (*k == "pki") {
      t.pki_dir = *v;
    } else if (*k == "identity") {
      t.identity = *v;
    } else if (*k == "name") {
      o.name = *v;
    } else if (*k == "star") {
      auto peers = split_list(*v);
      if (!peers) {
        return bad("has an empty address (comma-separated IPv4 addresses)");
      }
      t.initial_peers = *peers;
      t.discovery = peers->empty() ? cloudmgr::spi::TransportConfig::Discovery::kMulticast
                                   : cloudmgr::spi::TransportConfig::Discovery::kStar;
    } else if (*k == "interfaces") {
      auto ifs = split_list(*v);
      if (!ifs || ifs->empty()) {
        return bad("is not a comma-separated list of IPv4 addresses");
      }
      t.interfaces = *ifs;
    } else if (*k == "shared_memory" || *k == "samples") {
      auto b = parse_bool(*v);
      if (!b) {
        return bad("is not true or false");
      }
      (*k == "samples" ? o.samples : t.shared_memory) = *b;
    } else if (*k == "lease_ms") {
      auto n = parse_uint(*v);
      if (!n || *n == 0 || *n > 3'600'000) {
        return bad("is not a lease in milliseconds (1-3600000)");
      }
      t.agent_lease_ms = static_cast<std::uint32_t>(*n);
      t.announce_period_ms = std::max<std::uint32_t>(1, t.agent_lease_ms / 4);
    } else if (*k == "inventory") {
      o.inventory_path = *v;
    } else if (*k == "templates") {
      o.template_dir = *v;
    } else {
      return fail(CM_INVALID_ARGUMENT,
                  std::string(fn) + ": unknown key '" + *k +
                      "' (domain, transport, pki, identity, name, star, interfaces, shared_memory, samples, "
                      "lease_ms, inventory, templates)");
    }
    return CM_OK;
  });
}

// ---- the manager ----

CM_API cm_status cm_manager_open(const cm_config* config, cm_manager** out) {
  const char* const fn = "cm_manager_open";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    CM_TRY(need(fn, "config", config, Kind::kConfig));
    auto m = cloudmgr::Manager::open(config->options);
    CM_TRY(check(fn, m.status()));
    auto handle = std::make_unique<cm_manager>();
    handle->state->manager = std::move(*m);
    return hand_out(handle.release(), Kind::kManager, out);
  });
}

namespace {
void close_state(ManagerState& s) {
  std::vector<std::unique_ptr<cloudmgr::Subscription>> subs;
  {
    std::lock_guard sl(s.subs_mu);
    s.closing = true;
    for (auto* sub : s.subs) {
      subs.push_back(std::move(sub->sub));
    }
    s.subs.clear();
  }
  // Each waits for its callback to return. The manager's lock is not held yet: a callback
  // inside a manager call (which takes it shared) can finish.
  subs.clear();
  std::unique_lock lock(s.mu);
  s.manager.reset();
}
}  // namespace

CM_API cm_status cm_manager_close(cm_manager* manager) {
  const char* const fn = "cm_manager_close";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need(fn, "manager", manager, Kind::kManager));
    close_state(*manager->state);
    return CM_OK;
  });
}

CM_API void cm_manager_free(cm_manager* manager) {
  (void)call("cm_manager_free", [&]() -> cm_status {
    if (manager == nullptr) {
      return CM_OK;
    }
    CM_TRY(need("cm_manager_free", "manager", manager, Kind::kManager));
    close_state(*manager->state);
    free_object(manager, Kind::kManager);
    return CM_OK;
  });
}

CM_API cm_status cm_manager_wait_for_hosts(cm_manager* manager, size_t count, uint32_t timeout_ms) {
  const char* const fn = "cm_manager_wait_for_hosts";
  return call(fn, [&] {
    return with_manager(
        fn, manager, [&](cloudmgr::Manager& m) { return check(fn, m.wait_for_hosts(count, timeout_of(timeout_ms))); });
  });
}

// ---- hosts ----

CM_API cm_status cm_manager_hosts(cm_manager* manager, cm_host_list** out) {
  const char* const fn = "cm_manager_hosts";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto list = std::make_unique<cm_host_list>();
      for (auto& h : m.hosts()) {
        list->items.push_back(make_host(std::move(h)));
      }
      return hand_out(list.release(), Kind::kHostList, out);
    });
  });
}

CM_API cm_status cm_manager_host(cm_manager* manager, const char* id, cm_host_list** out) {
  const char* const fn = "cm_manager_host";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> host;
    CM_TRY(need_text(fn, "id", id, host));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto h = m.host(*host);
      if (!h) {
        return fail(CM_NOT_FOUND, std::string(fn) + ": no host '" + *host + "' in the manager's view");
      }
      auto list = std::make_unique<cm_host_list>();
      list->items.push_back(make_host(std::move(*h)));
      return hand_out(list.release(), Kind::kHostList, out);
    });
  });
}

CM_API size_t cm_host_list_size(const cm_host_list* list) {
  std::size_t n = 0;
  (void)call("cm_host_list_size", [&] {
    n = size_of("cm_host_list_size", list, Kind::kHostList);
    return CM_OK;
  });
  return n;
}

CM_API const cm_host* cm_host_list_at(const cm_host_list* list, size_t index) {
  const cm_host* p = nullptr;
  (void)call("cm_host_list_at", [&] {
    p = element("cm_host_list_at", list, Kind::kHostList, index);
    return CM_OK;
  });
  return p;
}

CM_API void cm_host_list_free(cm_host_list* list) {
  (void)call("cm_host_list_free", [&] {
    free_object(list, Kind::kHostList);
    return CM_OK;
  });
}

CM_API cm_status cm_manager_forget_host(cm_manager* manager, const char* id) {
  const char* const fn = "cm_manager_forget_host";
  return call(fn, [&]() -> cm_status {
    std::optional<std::string> host;
    CM_TRY(need_text(fn, "id", id, host));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) { return check(fn, m.forget_host(*host)); });
  });
}

CM_API cm_status cm_manager_prepare(cm_manager* manager, cm_target_kind kind, const char* name) {
  const char* const fn = "cm_manager_prepare";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need(fn, "manager", manager, Kind::kManager));
    cloudmgr::Target target;
    CM_TRY(target_of(fn, kind, name, target));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) { return check(fn, m.prepare(target)); });
  });
}

// ---- groups ----

CM_API cm_status cm_manager_groups(cm_manager* manager, cm_group_list** out) {
  const char* const fn = "cm_manager_groups";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto list = std::make_unique<cm_group_list>();
      for (auto& [name, members] : m.groups()) {
        auto item = std::make_unique<GroupItem>();
        item->name = name;
        item->members = std::move(members);
        for (const auto& h : item->members) {
          item->member_ptrs.push_back(h.c_str());
        }
        item->c = cm_group{item->name.c_str(), item->member_ptrs.size(), item->member_ptrs.data()};
        list->items.push_back(std::move(item));
      }
      return hand_out(list.release(), Kind::kGroupList, out);
    });
  });
}

CM_API size_t cm_group_list_size(const cm_group_list* list) {
  std::size_t n = 0;
  (void)call("cm_group_list_size", [&] {
    n = size_of("cm_group_list_size", list, Kind::kGroupList);
    return CM_OK;
  });
  return n;
}

CM_API const cm_group* cm_group_list_at(const cm_group_list* list, size_t index) {
  const cm_group* p = nullptr;
  (void)call("cm_group_list_at", [&] {
    p = element("cm_group_list_at", list, Kind::kGroupList, index);
    return CM_OK;
  });
  return p;
}

CM_API void cm_group_list_free(cm_group_list* list) {
  (void)call("cm_group_list_free", [&] {
    free_object(list, Kind::kGroupList);
    return CM_OK;
  });
}

// ---- VMs ----

CM_API const char* cm_vm_state_name(cm_vm_state state_arg) {
  const long long state = raw(state_arg);
  if (state < CM_VM_UNKNOWN || state > CM_VM_PM_SUSPENDED) {
    return "invalid";
  }
  return cloudmgr::to_string(static_cast<cloudmgr::VmState>(state)).data();
}

CM_API cm_status cm_manager_vms(cm_manager* manager, const char* host_id, const char* group, cm_vm_list** out) {
  const char* const fn = "cm_manager_vms";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> host;
    std::optional<std::string> grp;
    CM_TRY(need_text(fn, "host_id", host_id, host, true));
    CM_TRY(need_text(fn, "group", group, grp, true));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto list = std::make_unique<cm_vm_list>();
      for (auto& v : m.vms(host, grp)) {
        list->items.push_back(make_vm(std::move(v)));
      }
      return hand_out(list.release(), Kind::kVmList, out);
    });
  });
}

CM_API size_t cm_vm_list_size(const cm_vm_list* list) {
  std::size_t n = 0;
  (void)call("cm_vm_list_size", [&] {
    n = size_of("cm_vm_list_size", list, Kind::kVmList);
    return CM_OK;
  });
  return n;
}

CM_API const cm_vm* cm_vm_list_at(const cm_vm_list* list, size_t index) {
  const cm_vm* p = nullptr;
  (void)call("cm_vm_list_at", [&] {
    p = element("cm_vm_list_at", list, Kind::kVmList, index);
    return CM_OK;
  });
  return p;
}

CM_API void cm_vm_list_free(cm_vm_list* list) {
  (void)call("cm_vm_list_free", [&] {
    free_object(list, Kind::kVmList);
    return CM_OK;
  });
}

// ---- commands ----

CM_API const char* cm_outcome_name(cm_outcome outcome_arg) {
  const long long outcome = raw(outcome_arg);
  if (outcome < CM_OUTCOME_OK || outcome > CM_OUTCOME_NO_REPLY) {
    return "invalid";
  }
  return cloudmgr::to_string(static_cast<cloudmgr::HostResult::Outcome>(outcome)).data();
}

CM_API cm_status cm_manager_execute(cm_manager* manager, cm_target_kind kind, const char* name, const char* verb,
                                    const cm_arg* arguments, size_t argument_count, uint32_t timeout_ms,
                                    cm_result** out) {
  const char* const fn = "cm_manager_execute";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    CM_TRY(need("cm_manager_execute", "manager", manager, Kind::kManager));
    cloudmgr::Target target;
    CM_TRY(target_of(fn, kind, name, target));
    std::optional<std::string> v;
    CM_TRY(need_text(fn, "verb", verb, v));
    if (arguments == nullptr && argument_count != 0) {
      return fail(CM_INVALID_ARGUMENT,
                  std::string(fn) + ": arguments is NULL with argument_count " + std::to_string(argument_count));
    }
    cloudmgr::Arguments args;
    for (std::size_t i = 0; i < argument_count; ++i) {
      std::optional<std::string> key;
      std::optional<std::string> value;
      const std::string where = "arguments[" + std::to_string(i) + "]";
      CM_TRY(need_text(fn, (where + ".key").c_str(), arguments[i].key, key));
      CM_TRY(need_text(fn, (where + ".value").c_str(), arguments[i].value, value));
      args.emplace_back(std::move(*key), std::move(*value));
    }
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto r = m.execute(target, *v, args, {.timeout = timeout_of(timeout_ms)});
      CM_TRY(check(fn, r.status()));
      auto result = std::make_unique<cm_result>();
      fill_result(*result, std::move(*r));
      return hand_out(result.release(), Kind::kResult, out);
    });
  });
}

CM_API const char* cm_result_command_id(const cm_result* result) {
  const char* p = nullptr;
  (void)call("cm_result_command_id", [&] {
    CM_TRY(need("cm_result_command_id", "result", result, Kind::kResult));
    p = result->command_id.c_str();
    return CM_OK;
  });
  return p;
}

CM_API size_t cm_result_size(const cm_result* result) {
  std::size_t n = 0;
  (void)call("cm_result_size", [&] {
    n = size_of("cm_result_size", result, Kind::kResult, "result");
    return CM_OK;
  });
  return n;
}

CM_API const cm_host_result* cm_result_at(const cm_result* result, size_t index) {
  const cm_host_result* p = nullptr;
  (void)call("cm_result_at", [&] {
    p = element("cm_result_at", result, Kind::kResult, index, "result");
    return CM_OK;
  });
  return p;
}

CM_API size_t cm_result_count(const cm_result* result, cm_outcome outcome_arg) {
  const long long outcome = raw(outcome_arg);
  std::size_t n = 0;
  (void)call("cm_result_count", [&] {
    CM_TRY(need("cm_result_count", "result", result, Kind::kResult));
    if (outcome < CM_OUTCOME_OK || outcome > CM_OUTCOME_NO_REPLY) {
      return fail(CM_INVALID_ARGUMENT, "cm_result_count: outcome " + std::to_string(outcome) + " is not a cm_outcome");
    }
    for (const auto& i : result->items) {
      n += raw(i->c.outcome) == outcome ? 1U : 0U;
    }
    return CM_OK;
  });
  return n;
}

CM_API void cm_result_free(cm_result* result) {
  (void)call("cm_result_free", [&] {
    free_object(result, Kind::kResult);
    return CM_OK;
  });
}

// ---- monitoring ----

CM_API const cm_vm_sample* cm_host_sample_vm(const cm_host_sample* sample, size_t index) {
  const cm_vm_sample* p = nullptr;
  (void)call("cm_host_sample_vm", [&] {
    CM_TRY(need("cm_host_sample_vm", "sample", sample, Kind::kHostSample));
    auto* item = static_cast<SampleItem*>(registry().find(sample, Kind::kHostSample)->owner);
    if (index >= item->vms.size()) {
      return fail(CM_OUT_OF_RANGE, "cm_host_sample_vm: index " + std::to_string(index) + " is past vm_count " +
                                       std::to_string(item->vms.size()));
    }
    p = &item->vms[index];
    return CM_OK;
  });
  return p;
}

CM_API cm_status cm_manager_samples(cm_manager* manager, cm_sample_list** out) {
  const char* const fn = "cm_manager_samples";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto list = std::make_unique<cm_sample_list>();
      for (auto& s : m.samples()) {
        auto item = make_sample(std::move(s));
        registry().add(&item->c, Kind::kHostSample, item.get(), false);
        list->items.push_back(std::move(item));
      }
      return hand_out(list.release(), Kind::kSampleList, out);
    });
  });
}

CM_API size_t cm_sample_list_size(const cm_sample_list* list) {
  std::size_t n = 0;
  (void)call("cm_sample_list_size", [&] {
    n = size_of("cm_sample_list_size", list, Kind::kSampleList);
    return CM_OK;
  });
  return n;
}

CM_API const cm_host_sample* cm_sample_list_at(const cm_sample_list* list, size_t index) {
  const cm_host_sample* p = nullptr;
  (void)call("cm_sample_list_at", [&] {
    p = element("cm_sample_list_at", list, Kind::kSampleList, index);
    return CM_OK;
  });
  return p;
}

CM_API void cm_sample_list_free(cm_sample_list* list) {
  (void)call("cm_sample_list_free", [&] {
    free_object(list, Kind::kSampleList);
    return CM_OK;
  });
}

CM_API cm_status cm_manager_subscribe_samples(cm_manager* manager, cm_sample_callback callback, void* user_data,
                                              cm_subscription** out) {
  const char* const fn = "cm_manager_subscribe_samples";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    if (callback == nullptr) {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": callback is NULL");
    }
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto sub = m.subscribe_samples([callback, user_data](const cloudmgr::HostSample& s) noexcept {
        try {
          auto item = make_sample(s);
          registry().add(&item->c, Kind::kHostSample, item.get(), false);
          callback(&item->c, user_data);
          registry().remove(&item->c);
        } catch (...) {
          // Out of memory building the view: this tick is not delivered.
        }
      });
      CM_TRY(check(fn, sub.status()));
      return keep_subscription(fn, manager, std::move(*sub), out);
    });
  });
}

CM_API void cm_subscription_free(cm_subscription* subscription) {
  (void)call("cm_subscription_free", [&]() -> cm_status {
    if (subscription == nullptr) {
      return CM_OK;
    }
    CM_TRY(need("cm_subscription_free", "subscription", subscription, Kind::kSubscription));
    std::unique_ptr<cloudmgr::Subscription> sub;
    {
      std::lock_guard lock(subscription->state->subs_mu);
      subscription->state->subs.erase(subscription);
      sub = std::move(subscription->sub);
    }
    sub.reset();  // waits for a callback in progress
    free_object(subscription, Kind::kSubscription);
    return CM_OK;
  });
}

CM_API const char* cm_metric_name(cm_metric metric_arg) {
  const long long metric = raw(metric_arg);
  if (metric < CM_METRIC_CPU_PCT || metric >= CM_METRIC_COUNT) {
    return "invalid";
  }
  return cloudmgr::to_string(static_cast<cloudmgr::Metric>(metric)).data();
}

CM_API const cm_history_point* cm_history_series_point(const cm_history_series* series, size_t index) {
  const cm_history_point* p = nullptr;
  (void)call("cm_history_series_point", [&] {
    CM_TRY(need("cm_history_series_point", "series", series, Kind::kHistorySeries));
    auto* item = static_cast<SeriesItem*>(registry().find(series, Kind::kHistorySeries)->owner);
    if (index >= item->points.size()) {
      return fail(CM_OUT_OF_RANGE, "cm_history_series_point: index " + std::to_string(index) + " is past point_count " +
                                       std::to_string(item->points.size()));
    }
    p = &item->points[index];
    return CM_OK;
  });
  return p;
}

CM_API cm_status cm_manager_history(cm_manager* manager, cm_target_kind kind, const char* name, const char* vm,
                                    int64_t since_ns, int64_t until_ns, int64_t step_ns, uint32_t timeout_ms,
                                    cm_history** out) {
  const char* const fn = "cm_manager_history";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    CM_TRY(need(fn, "manager", manager, Kind::kManager));
    cloudmgr::Target target;
    CM_TRY(target_of(fn, kind, name, target));
    std::optional<std::string> v;
    CM_TRY(need_text(fn, "vm", vm, v, true));
    cloudmgr::HistoryQuery q;
    q.vm = v.value_or("");
    q.since_ns = since_ns;
    q.until_ns = until_ns;
    q.step_ns = step_ns;
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) {
      auto r = m.history(target, q, {.timeout = timeout_of(timeout_ms)});
      CM_TRY(check(fn, r.status()));
      auto history = std::make_unique<cm_history>();
      std::vector<cloudmgr::HistorySeries> all;
      for (auto& h : r->hosts) {
        for (auto& s : h.reply.history) {
          all.push_back(std::move(s));
        }
        h.reply.history.clear();
      }
      fill_result(history->result, std::move(*r));
      for (auto& s : all) {
        auto item = std::make_unique<SeriesItem>();
        item->series = std::move(s);
        const auto& hs = item->series;
        for (const auto& p : hs.points) {
          cm_history_point c{};
          c.start_ns = p.start_ns;
          c.samples = p.samples;
          for (std::size_t i = 0; i < cloudmgr::kMetricCount; ++i) {
            c.min[i] = p.min[i];
            c.avg[i] = p.avg[i];
            c.max[i] = p.max[i];
          }
          item->points.push_back(c);
        }
        item->c = cm_history_series{hs.host_id.c_str(), hs.vm_uuid.c_str(),   hs.vm_name.c_str(),
                                    hs.step_ns,         hs.simulated ? 1 : 0, item->points.size()};
        registry().add(&item->c, Kind::kHistorySeries, item.get(), false);
        history->items.push_back(std::move(item));
      }
      registry().add(&history->result, Kind::kResult, nullptr, false);
      return hand_out(history.release(), Kind::kHistory, out);
    });
  });
}

CM_API size_t cm_history_size(const cm_history* history) {
  std::size_t n = 0;
  (void)call("cm_history_size", [&] {
    n = size_of("cm_history_size", history, Kind::kHistory, "history");
    return CM_OK;
  });
  return n;
}

CM_API const cm_history_series* cm_history_at(const cm_history* history, size_t index) {
  const cm_history_series* p = nullptr;
  (void)call("cm_history_at", [&] {
    p = element("cm_history_at", history, Kind::kHistory, index, "history");
    return CM_OK;
  });
  return p;
}

CM_API const cm_result* cm_history_result(const cm_history* history) {
  const cm_result* p = nullptr;
  (void)call("cm_history_result", [&] {
    CM_TRY(need("cm_history_result", "history", history, Kind::kHistory));
    p = &history->result;
    return CM_OK;
  });
  return p;
}

CM_API void cm_history_free(cm_history* history) {
  (void)call("cm_history_free", [&] {
    free_object(history, Kind::kHistory);
    return CM_OK;
  });
}

// ---- events ----

CM_API const char* cm_event_kind_name(cm_event_kind kind_arg) {
  const long long kind = raw(kind_arg);
  if (kind < CM_EVENT_HOST_ONLINE || kind > CM_EVENT_EVENTS_LOST) {
    return "invalid";
  }
  return cloudmgr::to_string(static_cast<cloudmgr::CloudEvent::Kind>(kind)).data();
}

CM_API cm_status cm_manager_subscribe_events(cm_manager* manager, uint32_t flags, size_t max_queued,
                                             cm_event_callback callback, void* user_data, cm_subscription** out) {
  const char* const fn = "cm_manager_subscribe_events";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    if (callback == nullptr) {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": callback is NULL");
    }
    if ((flags & ~CM_EVENTS_REPLAY) != 0) {
      return fail(CM_INVALID_ARGUMENT, std::string(fn) + ": unknown flags " +
                                           std::to_string(flags & ~CM_EVENTS_REPLAY) +
                                           " (CM_EVENTS_REPLAY is the only one)");
    }
    cloudmgr::EventOptions options;
    options.replay = (flags & CM_EVENTS_REPLAY) != 0;
    if (max_queued != 0) {
      options.max_queued = max_queued;
    }
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto sub = m.subscribe_events(
          [callback, user_data](const cloudmgr::CloudEvent& e) noexcept {
            try {
              EventItem item;
              item.event = e;
              fill_event(item);
              callback(&item.c, user_data);
            } catch (...) {
              // Out of memory building the view: this event is not delivered.
            }
          },
          options);
      CM_TRY(check(fn, sub.status()));
      return keep_subscription(fn, manager, std::move(*sub), out);
    });
  });
}

// ---- templates ----

CM_API cm_status cm_manager_templates(cm_manager* manager, cm_template_list** out) {
  const char* const fn = "cm_manager_templates";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto list = m.templates();
      CM_TRY(check(fn, list.status()));
      return hand_out_templates(std::move(*list), out);
    });
  });
}

CM_API cm_status cm_manager_template_versions(cm_manager* manager, const char* name, cm_template_list** out) {
  const char* const fn = "cm_manager_template_versions";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> n;
    CM_TRY(need_text(fn, "name", name, n));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto list = m.template_versions(*n);
      CM_TRY(check(fn, list.status()));
      return hand_out_templates(std::move(*list), out);
    });
  });
}

namespace {
cm_status ref_of(const char* fn, const char* text, cloudmgr::TemplateRef& ref) {
  std::optional<std::string> t;
  CM_TRY(need_text(fn, "ref", text, t));
  auto r = cloudmgr::TemplateRef::parse(*t);
  CM_TRY(check(fn, r.status()));
  ref = *r;
  return CM_OK;
}
}  // namespace

CM_API cm_status cm_manager_template(cm_manager* manager, const char* ref, cm_template_list** out) {
  const char* const fn = "cm_manager_template";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    cloudmgr::TemplateRef r;
    CM_TRY(ref_of(fn, ref, r));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto t = m.get_template(r);
      CM_TRY(check(fn, t.status()));
      return hand_out_templates({std::move(*t)}, out);
    });
  });
}

CM_API size_t cm_template_list_size(const cm_template_list* list) {
  std::size_t n = 0;
  (void)call("cm_template_list_size", [&] {
    n = size_of("cm_template_list_size", list, Kind::kTemplateList);
    return CM_OK;
  });
  return n;
}

CM_API const cm_template* cm_template_list_at(const cm_template_list* list, size_t index) {
  const cm_template* p = nullptr;
  (void)call("cm_template_list_at", [&] {
    p = element("cm_template_list_at", list, Kind::kTemplateList, index);
    return CM_OK;
  });
  return p;
}

CM_API void cm_template_list_free(cm_template_list* list) {
  (void)call("cm_template_list_free", [&] {
    free_object(list, Kind::kTemplateList);
    return CM_OK;
  });
}

CM_API cm_status cm_manager_import_template(cm_manager* manager, const char* name, const char* image_path,
                                            const char* spec_json, const char* format, cm_template_list** out) {
  const char* const fn = "cm_manager_import_template";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> n;
    std::optional<std::string> path;
    std::optional<std::string> spec;
    std::optional<std::string> fmt;
    CM_TRY(need_text(fn, "name", name, n));
    CM_TRY(need_text(fn, "image_path", image_path, path));
    CM_TRY(need_text(fn, "spec_json", spec_json, spec));
    CM_TRY(need_text(fn, "format", format, fmt, true));
    cloudmgr::spi::ImportRequest req;
    req.name = *n;
    req.image_path = *path;
    auto parsed = cloudmgr::template_spec_from_json(*spec);
    if (!parsed.ok()) {
      return fail(to_c(parsed.status().code()), std::string(fn) + ": spec_json: " + parsed.status().message());
    }
    req.spec = *parsed;
    if (fmt && !fmt->empty()) {
      auto f = cloudmgr::parse_image_format(*fmt);
      if (!f.ok()) {
        return fail(to_c(f.status().code()), std::string(fn) + ": format: " + f.status().message());
      }
      req.format = *f;
    }
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto t = m.import_template(req);
      CM_TRY(check(fn, t.status()));
      return hand_out_templates({std::move(*t)}, out);
    });
  });
}

CM_API cm_status cm_manager_verify_template(cm_manager* manager, const char* ref) {
  const char* const fn = "cm_manager_verify_template";
  return call(fn, [&]() -> cm_status {
    cloudmgr::TemplateRef r;
    CM_TRY(ref_of(fn, ref, r));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) { return check(fn, m.verify_template(r)); });
  });
}

CM_API cm_status cm_manager_delete_template(cm_manager* manager, const char* ref, int force) {
  const char* const fn = "cm_manager_delete_template";
  return call(fn, [&]() -> cm_status {
    cloudmgr::TemplateRef r;
    CM_TRY(ref_of(fn, ref, r));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) { return check(fn, m.delete_template(r, force != 0)); });
  });
}

CM_API cm_status cm_manager_capture_template(cm_manager* manager, const char* host_id, const char* vm, const char* name,
                                             uint32_t timeout_ms, cm_template_list** out) {
  const char* const fn = "cm_manager_capture_template";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> h;
    std::optional<std::string> v;
    std::optional<std::string> n;
    CM_TRY(need_text(fn, "host_id", host_id, h));
    CM_TRY(need_text(fn, "vm", vm, v));
    CM_TRY(need_text(fn, "name", name, n));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto t = m.capture_template(*h, *v, *n, {.timeout = timeout_of(timeout_ms)});
      CM_TRY(check(fn, t.status()));
      return hand_out_templates({std::move(*t)}, out);
    });
  });
}

// ---- provisioning ----

CM_API cm_status cm_manager_create_vms(cm_manager* manager, const cm_arg* options, size_t option_count,
                                       cm_progress_callback progress, void* user_data, cm_create_result** out) {
  const char* const fn = "cm_manager_create_vms";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    CM_TRY(need(fn, "manager", manager, Kind::kManager));
    cloudmgr::CreateVmsRequest req;
    CM_TRY(create_request(fn, options, option_count, req));
    if (progress != nullptr) {
      req.on_progress = [progress, user_data](const std::string& step) noexcept { progress(step.c_str(), user_data); };
    }
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto r = m.create_vms(req);
      CM_TRY(check(fn, r.status()));
      auto result = std::make_unique<cm_create_result>();
      result->template_item = make_template(std::move(r->template_info));
      for (auto& v : r->vms) {
        result->vms.items.push_back(
            make_vm(cloudmgr::VmView{std::move(v.host_id), std::move(v.vm), cloudmgr::now_ns()}));
      }
      result->image_sent_to = std::move(r->image_sent_to);
      for (const auto& h : result->image_sent_to) {
        result->image_sent_ptrs.push_back(h.c_str());
      }
      cm_create_info& c = result->c;
      c.template_info = &result->template_item->c;
      c.vms = &result->vms;
      c.image_sent_count = result->image_sent_ptrs.size();
      c.image_sent_to = result->image_sent_ptrs.data();
      c.image_bytes_sent = r->image_bytes_sent;
      c.transfer_ns = r->transfer_ns;
      c.provision_ns = r->provision_ns;
      registry().add(&result->vms, Kind::kVmList, nullptr, false);
      return hand_out(result.release(), Kind::kCreateResult, out);
    });
  });
}

CM_API const cm_create_info* cm_create_result_info(const cm_create_result* result) {
  const cm_create_info* p = nullptr;
  (void)call("cm_create_result_info", [&] {
    CM_TRY(need("cm_create_result_info", "result", result, Kind::kCreateResult));
    p = &result->c;
    return CM_OK;
  });
  return p;
}

CM_API void cm_create_result_free(cm_create_result* result) {
  (void)call("cm_create_result_free", [&] {
    free_object(result, Kind::kCreateResult);
    return CM_OK;
  });
}

CM_API cm_status cm_manager_delete_vm(cm_manager* manager, const char* host_id, const char* vm, int force,
                                      uint32_t timeout_ms, cm_result** out) {
  const char* const fn = "cm_manager_delete_vm";
  return call(fn, [&]() -> cm_status {
    CM_TRY(need_out(fn, out));
    *out = nullptr;
    std::optional<std::string> h;
    std::optional<std::string> v;
    CM_TRY(need_text(fn, "host_id", host_id, h));
    CM_TRY(need_text(fn, "vm", vm, v));
    return with_manager(fn, manager, [&](cloudmgr::Manager& m) -> cm_status {
      auto r = m.delete_vm(*h, *v, force != 0, {.timeout = timeout_of(timeout_ms)});
      CM_TRY(check(fn, r.status()));
      auto result = std::make_unique<cm_result>();
      fill_result(*result, std::move(*r));
      return hand_out(result.release(), Kind::kResult, out);
    });
  });
}

}  // extern "C"
