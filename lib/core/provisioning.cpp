#include "core/provisioning.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cloudmgr/templates.h"
#include "cloudmgr/units.h"
#include "core/status_macros.h"
#include "image/image_io.h"

namespace cloudmgr {

namespace {

using std::chrono::milliseconds;

struct Deadline {
  std::int64_t at_ns;
  // What is left of it as a command timeout (at least 1 ms: a spent deadline still sends
  // nothing useful, and the command reports it).
  milliseconds left() const { return milliseconds(std::max<std::int64_t>(1, (at_ns - now_ns()) / 1'000'000)); }
};

// One result per host, from commands sent to several hosts at once (each to its own host).
std::map<std::string, Result<CommandResult>> to_each(Manager& m, const std::map<std::string, Arguments>& per_host,
                                                     const std::string& verb, const Deadline& deadline) {
  std::map<std::string, std::future<Result<CommandResult>>> futures;
  for (const auto& [host, args] : per_host) {
    futures.emplace(host, m.execute_async(Target::host(host), verb, args, {.timeout = deadline.left()}));
  }
  std::map<std::string, Result<CommandResult>> out;
  for (auto& [host, f] : futures) {
    out.emplace(host, f.get());
  }
  return out;
}

// The host's own status in a one-host result, or the reason there is none.
Status host_status(const Result<CommandResult>& r) {
  if (!r.ok()) {
    return r.status();
  }
  if (r->hosts.size() != 1) {
    return internal_error("a command to one host gave " + std::to_string(r->hosts.size()) + " results");
  }
  return r->hosts[0].status;
}

// Sends the template's base image to `hosts` (those that turn out to have it already are
// dropped from the list). Every byte read from the store is hashed on the way: a store image
// that no longer matches its SHA-256 is never committed anywhere.
Status send_image(Manager& m, spi::TemplateStore& store, const ChunkSender& send, const TemplateInfo& t,
                  std::vector<std::string>& hosts, const Deadline& deadline, std::uint64_t& data_bytes,
                  const std::function<void(const std::string&)>& progress) {
  CLOUDMGR_ASSIGN_OR_RETURN(const spi::ImageFile file, store.image(t.image.sha256));
  const int fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return data_loss_error(fmt::format("template {}: its image '{}' cannot be opened", t.ref().to_string(), file.path));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  CLOUDMGR_ASSIGN_OR_RETURN(const std::vector<image::Extent> extents,
                            image::data_extents(fd, file.info.size_bytes, file.path));
  data_bytes = 0;
  for (const auto& e : extents) {
    data_bytes += e.length;
  }
  const std::string transfer = random_uuid();
  const Arguments announce{{"transfer", transfer},
                           {"sha256", t.image.sha256},
                           {"format", std::string(to_string(t.image.format))},
                           {"size_bytes", std::to_string(file.info.size_bytes)},
                           {"virtual_size_bytes", std::to_string(file.info.virtual_size_bytes)},
                           {"data_bytes", std::to_string(data_bytes)}};
  std::map<std::string, Arguments> per_host;
  for (const auto& h : hosts) {
    per_host[h] = announce;
  }
  std::vector<std::string> receiving;
  const auto abort_all = [&] {
    std::map<std::string, Arguments> abort;
    for (const auto& h : receiving) {
      abort[h] = {{"transfer", transfer}};
    }
    (void)to_each(m, abort, "image.abort", {now_ns() + 10'000'000'000LL});
  };
  for (auto& [host, r] : to_each(m, per_host, "image.receive", deadline)) {
    const Status s = host_status(r);
    if (s.ok()) {
      receiving.push_back(host);
    } else if (s.code() != StatusCode::kAlreadyExists) {  // cached meanwhile: nothing to send
      abort_all();
      return s.with_context(fmt::format("host '{}' cannot take the base image of {}", host, t.ref().to_string()));
    }
  }
  hosts = receiving;
  if (receiving.empty()) {
    return {};
  }
  if (progress) {
    progress(fmt::format("sending the base image of {} ({}, {} of data) to {}", t.ref().to_string(),
                         format_bytes(file.info.size_bytes), format_bytes(data_bytes), fmt::join(receiving, ", ")));
  }
  ImageChunk chunk{.transfer_id = transfer, .sha256 = t.image.sha256};
  auto read = image::read_pieces(fd, file.info.size_bytes, file.path, kImageChunkBytes,
                                 [&](std::uint64_t offset, const std::vector<std::uint8_t>& piece) {
                                   chunk.offset_bytes = offset;
                                   chunk.data = piece;
                                   return send(chunk, receiving, deadline.at_ns);
                                 });
  if (!read.ok()) {
    abort_all();
    return read.status().with_context(fmt::format("sending the base image of {}", t.ref().to_string()));
  }
  if (const std::string& sha = *read; sha != t.image.sha256) {
    abort_all();
    return data_loss_error(fmt::format(
        "template {}: its image in the store is corrupt (SHA-256 {}, expected {}); it was not used, nothing was made",
        t.ref().to_string(), sha, t.image.sha256));
  }
  per_host.clear();
  for (const auto& h : receiving) {
    per_host[h] = {{"transfer", transfer}};
  }
  Status first;
  for (auto& [host, r] : to_each(m, per_host, "image.commit", deadline)) {
    if (const Status s = host_status(r); !s.ok() && first.ok()) {
      first = s.with_context(fmt::format("host '{}' did not cache the base image of {}", host, t.ref().to_string()));
    }
  }
  return first;
}

}  // namespace

Result<CreateVmsResult> provision_vms(Manager& m, spi::TemplateStore& store, const ChunkSender& send,
                                      const CreateVmsRequest& r) {
  const std::int64_t started = now_ns();
  const Deadline deadline{started + static_cast<std::int64_t>(r.timeout.count()) * 1'000'000};
  const auto progress = [&](const std::string& line) {
    if (r.on_progress) {
      r.on_progress(line);
    }
  };
  if (r.count == 0 || r.count > 1000) {
    return invalid_argument_error(fmt::format("count is {}: between 1 and 1000 VMs are created at once", r.count));
  }
  if (r.timeout.count() <= 0) {
    return invalid_argument_error("the timeout must be positive");
  }
  CLOUDMGR_RETURN_IF_ERROR(validate_vm_name(r.name));
  CLOUDMGR_RETURN_IF_ERROR(r.overcommit.validate());
  std::vector<std::string> names;
  for (std::uint32_t i = 0; i < r.count; ++i) {
    names.push_back(r.count == 1 ? r.name : fmt::format("{}-{}", r.name, i + 1));
    CLOUDMGR_RETURN_IF_ERROR(validate_vm_name(names.back()).with_context("the VMs' names"));
  }
  CLOUDMGR_ASSIGN_OR_RETURN(CreateVmsResult out, [&]() -> Result<CreateVmsResult> {
    CLOUDMGR_ASSIGN_OR_RETURN(TemplateInfo t, store.get(r.template_ref));
    return CreateVmsResult{.template_info = std::move(t)};
  }());
  const TemplateInfo& t = out.template_info;

  // ---- the names are free everywhere ----
  const std::set<std::string> wanted(names.begin(), names.end());
  for (const VmView& v : m.vms()) {
    if (wanted.contains(v.vm.name)) {
      return already_exists_error(
          fmt::format("a VM named '{}' exists on host '{}' already; nothing was made", v.vm.name, v.host_id));
    }
  }

  // ---- candidates ----
  std::vector<std::string> ids;
  std::string where = "every online host";
  if (!r.where) {
    for (const HostEntry& h : m.hosts()) {
      if (h.online()) {
        ids.push_back(h.view.info.id);
      }
    }
    if (ids.empty()) {
      return unavailable_error("no host is online; nothing was made");
    }
  } else if (r.where->kind == Target::Kind::kHost) {
    const auto h = m.host(r.where->name);
    if (!h) {
      return not_found_error(fmt::format("no host '{}'", r.where->name));
    }
    ids.push_back(r.where->name);
    where = "host " + r.where->name;
  } else if (r.where->kind == Target::Kind::kGroup) {
    const auto groups = m.groups();
    auto g = groups.find(r.where->name);
    if (g == groups.end() || g->second.empty()) {
      return not_found_error(fmt::format("no host is in group '{}'", r.where->name));
    }
    ids = g->second;
    where = "group " + r.where->name;
  } else {
    return invalid_argument_error("VMs are placed on a host, a group, or every online host");
  }
  std::map<std::string, bool> cached;
  for (const HostImages& hi : m.host_images()) {
    cached[hi.host_id] = std::any_of(hi.images.begin(), hi.images.end(),
                                     [&](const CachedImage& c) { return c.info.sha256 == t.image.sha256; });
  }
  std::vector<PlacementCandidate> candidates;
  for (const std::string& id : ids) {
    const auto h = m.host(id);
    PlacementCandidate c{.host_id = id};
    if (h) {
      c.online = h->online();
      c.cpus = h->view.info.cpu.logical_cpus;
      c.memory_bytes = h->view.info.memory_bytes;
      for (const VmView& v : m.vms(id)) {
        c.vcpus_allocated += v.vm.vcpus;
        c.memory_allocated_bytes += std::max(v.vm.memory_bytes, v.vm.max_memory_bytes);
        ++c.vms;
      }
    } else {
      c.online = false;
    }
    c.has_image = cached[id];
    candidates.push_back(c);
  }
  const PlacementRequest preq{.vcpus = t.spec.vcpus,
                              .memory_bytes = t.spec.memory_bytes,
                              .count = r.count,
                              .policy = r.policy,
                              .overcommit = r.overcommit};
  auto placed = place(preq, candidates);
  if (!placed.ok()) {
    return placed.status().with_context(fmt::format("placing {} VM(s) of {} ({} vCPUs, {} each) on {}", r.count,
                                                    t.ref().to_string(), t.spec.vcpus,
                                                    format_bytes(t.spec.memory_bytes), where));
  }
  std::map<std::string, std::vector<std::string>> per_host;  // host -> its VMs' names, in order
  for (std::size_t i = 0; i < placed->size(); ++i) {
    per_host[(*placed)[i]].push_back(names[i]);
  }
  {
    std::string plan;
    for (const auto& [h, n] : per_host) {
      plan += fmt::format("{}{} ({})", plan.empty() ? "" : ", ", h, fmt::join(n, ", "));
    }
    progress(fmt::format("placed {} VM(s) of {} on {} by {}: {}", r.count, t.ref().to_string(), where,
                         to_string(r.policy), plan));
  }

  // ---- the base image where it is missing ----
  std::vector<std::string> needing;
  for (const auto& [h, n] : per_host) {
    if (!cached[h]) {
      needing.push_back(h);
    }
  }
  if (!needing.empty()) {
    const std::int64_t t0 = now_ns();
    CLOUDMGR_RETURN_IF_ERROR(send_image(m, store, send, t, needing, deadline, out.image_bytes_sent, progress));
    out.transfer_ns = now_ns() - t0;
    out.image_sent_to = needing;
    if (!needing.empty()) {
      progress(fmt::format("base image verified and cached on {}", fmt::join(needing, ", ")));
    }
  }

  // ---- each host clones it and defines its VMs ----
  const std::int64_t t1 = now_ns();
  const std::string spec_json = template_spec_to_json(t.spec);
  std::map<std::string, Arguments> instantiate;
  for (const auto& [h, n] : per_host) {
    Arguments args{{"template", t.name},
                   {"version", std::to_string(t.version)},
                   {"sha256", t.image.sha256},
                   {"spec", spec_json},
                   {"start", r.start ? "true" : "false"}};
    for (const auto& name : n) {
      args.emplace_back("name", name);
    }
    instantiate[h] = std::move(args);
  }
  std::vector<std::string> failures;
  Status first_failure;
  std::map<std::string, std::vector<VmInfo>> made;
  for (auto& [host, res] : to_each(m, instantiate, "vm.instantiate", deadline)) {
    const Status s = host_status(res);
    if (s.ok()) {
      made[host] = res->hosts[0].reply.vms;
      progress(fmt::format("{}: {} made", host, fmt::join(per_host[host], ", ")));
    } else {
      failures.push_back(fmt::format("{}: {}", host, s.message()));
      if (first_failure.ok()) {
        first_failure = s;
      }
    }
  }
  if (!failures.empty()) {
    // All or nothing: remove what the other hosts made (and anything a host that did not
    // answer may have made after all).
    std::size_t removed = 0;
    for (const auto& [host, n] : per_host) {
      for (const std::string& name : n) {
        auto d = m.delete_vm(host, name, true, {.timeout = milliseconds(60'000)});
        if (d.ok() && d->all_ok()) {
          ++removed;
        }
      }
    }
    return Status(first_failure.code(),
                  fmt::format("provisioning {} VM(s) of {} failed: {}; {} VM(s) made elsewhere were removed again",
                              r.count, t.ref().to_string(), fmt::join(failures, "; "), removed));
  }
  out.provision_ns = now_ns() - t1;
  for (const std::string& name : names) {
    for (const auto& [host, vms] : made) {
      for (const VmInfo& vm : vms) {
        if (vm.name == name) {
          out.vms.push_back({host, vm});
          // Replies carry VMs as VmStatus, which has no origin on the wire.
          out.vms.back().vm.origin = {t.name, t.version, t.image.sha256};
        }
      }
    }
  }
  return out;
}

}  // namespace cloudmgr
