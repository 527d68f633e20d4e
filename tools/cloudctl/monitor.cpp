// cloudctl's monitoring views; every number comes from the Manager (samples and history).
#include "cloudctl/monitor.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <ctime>
#include <map>
#include <thread>

#include "cloudctl/chart.h"
#include "common/json.h"
#include "common/table.h"

namespace cloudctl {

namespace {

using cloudmgr::HistoryQuery;
using cloudmgr::HistorySeries;
using cloudmgr::HostResult;
using cloudmgr::HostSample;
using cloudmgr::Metric;
using cloudmgr::Target;
using cloudmgr::VmSample;
using cloudmgr::tools::Table;

constexpr std::int64_t kSec = 1'000'000'000;

std::string pct(double v) { return fmt::format("{:.1f}", v); }

std::string rate(double bytes_per_s) {
  return cloudmgr::format_bytes(static_cast<std::uint64_t>(std::max(0.0, bytes_per_s))) + "/s";
}

std::string metric_text(Metric m, double v) {
  switch (m) {
    case Metric::kCpuPct:
      return pct(v) + "%";
    case Metric::kMemoryUsedBytes:
      return cloudmgr::format_bytes(static_cast<std::uint64_t>(std::max(0.0, v)));
    case Metric::kDiskReadOpsPerS:
    case Metric::kDiskWriteOpsPerS:
      return fmt::format("{:.1f}/s", v);
    default:
      return rate(v);
  }
}

// Local time as HH:MM:SS, or MM-DD HH:MM:SS with the date.
std::string local_time(std::int64_t ns, bool with_date = false) {
  const std::time_t t = static_cast<std::time_t>(ns / kSec);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  if (with_date) {
    std::strftime(buf, sizeof buf, "%m-%d %H:%M:%S", &tm);
  } else {
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  }
  return buf;
}

nlohmann::json to_json(const VmSample& v) {
  return {{"uuid", v.uuid},
          {"name", v.name},
          {"state", std::string(cloudmgr::to_string(v.state))},
          {"vcpus", v.vcpus},
          {"rates_valid", v.rates_valid},
          {"cpu_pct", v.cpu_pct},
          {"cpu_host_pct", v.cpu_host_pct},
          {"memory_bytes", v.memory_bytes},
          {"memory_used_bytes", v.memory_used_bytes},
          {"disk_read_bytes_per_s", v.disk_read_bytes_per_s},
          {"disk_write_bytes_per_s", v.disk_write_bytes_per_s},
          {"disk_read_ops_per_s", v.disk_read_ops_per_s},
          {"disk_write_ops_per_s", v.disk_write_ops_per_s},
          {"net_rx_bytes_per_s", v.net_rx_bytes_per_s},
          {"net_tx_bytes_per_s", v.net_tx_bytes_per_s}};
}

nlohmann::json to_json(const HostSample& s) {
  nlohmann::json vms = nlohmann::json::array();
  for (const auto& v : s.vms) {
    vms.push_back(to_json(v));
  }
  return {{"host", s.host_id},
          {"taken_ns", s.taken_ns},
          {"interval_ns", s.interval_ns},
          {"simulated", s.simulated},
          {"rates_valid", s.rates_valid},
          {"cpus", s.cpus},
          {"cpu_pct", s.cpu_pct},
          {"memory_bytes", s.memory_bytes},
          {"memory_used_bytes", s.memory_used_bytes},
          {"disk_read_bytes_per_s", s.disk_read_bytes_per_s},
          {"disk_write_bytes_per_s", s.disk_write_bytes_per_s},
          {"disk_read_ops_per_s", s.disk_read_ops_per_s},
          {"disk_write_ops_per_s", s.disk_write_ops_per_s},
          {"net_rx_bytes_per_s", s.net_rx_bytes_per_s},
          {"net_tx_bytes_per_s", s.net_tx_bytes_per_s},
          {"vms", vms}};
}

nlohmann::json to_json(const HistorySeries& s) {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : s.points) {
    nlohmann::json pj{{"start_ns", p.start_ns}, {"samples", p.samples}};
    for (std::size_t i = 0; i < cloudmgr::kMetricCount; ++i) {
      const std::string name(cloudmgr::to_string(static_cast<Metric>(i)));
      pj[name] = {{"min", p.min[i]}, {"avg", p.avg[i]}, {"max", p.max[i]}};
    }
    points.push_back(pj);
  }
  return {{"host", s.host_id},    {"vm_uuid", s.vm_uuid},     {"vm_name", s.vm_name},
          {"step_ns", s.step_ns}, {"simulated", s.simulated}, {"points", points}};
}

Result<std::vector<Metric>> parse_metrics(const std::string& text) {
  std::vector<Metric> out;
  if (text == "all") {
    for (std::size_t i = 0; i < cloudmgr::kMetricCount; ++i) {
      out.push_back(static_cast<Metric>(i));
    }
    return out;
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    auto m = cloudmgr::parse_metric(text.substr(start, comma - start));
    if (!m.ok()) {
      return m.status();
    }
    out.push_back(*m);
    start = comma + 1;
  }
  return out;
}

// ---- hosts -------------------------------------------------------------------------------

}  // namespace

int cmd_hosts(const Options& o) {
  Session s(o, /*samples=*/true);
  if (Status st = s.open(); !st.ok()) {
    return fail(st);
  }
  const auto hosts = s.m().hosts();
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& h : hosts) {
      auto e = cloudmgr::tools::to_json(h.view.info);
      e["groups"] = h.view.groups;
      e["state"] = std::string(cloudmgr::to_string(h.state));
      e["last_seen_ns"] = h.last_seen_ns;
      e["offline_since_ns"] = h.offline_since_ns;
      e["agent_version"] = h.view.agent_version;
      if (auto sample = s.m().sample(h.view.info.id)) {
        auto sj = to_json(*sample);
        sj.erase("vms");
        e["usage"] = sj;
      }
      j.push_back(e);
    }
    print_json(j);
    return kExitOk;
  }
  Table t({"HOST", "STATE", "LAST SEEN", "CPUS", "CPU%", "MEM USED", "MEMORY", "VCPUS ALLOC", "VMS", "GROUPS"});
  bool simulated = false;
  for (const auto& h : hosts) {
    const auto& i = h.view.info;
    std::string cpu = "-";
    std::string used = "-";
    if (auto sample = s.m().sample(i.id); sample && sample->rates_valid) {
      cpu = pct(sample->cpu_pct) + (sample->simulated ? "*" : "");
      used = cloudmgr::format_bytes(sample->memory_used_bytes);
      simulated = simulated || sample->simulated;
    }
    t.add({i.id, std::string(cloudmgr::to_string(h.state)), ago(h.last_seen_ns), std::to_string(i.cpu.logical_cpus),
           cpu, used, cloudmgr::format_bytes(i.memory_bytes),
           fmt::format("{}/{}", i.vcpus_allocated, i.cpu.logical_cpus),
           fmt::format("{} ({} active)", i.vms_defined, i.vms_active), join(h.view.groups)});
  }
  t.print();
  if (simulated) {
    std::printf("* simulated load: these hosts run libvirt's test driver, whose usage comes from a load model\n");
  }
  if (hosts.empty()) {
    std::fprintf(stderr, "cloudctl: no host answered on DDS domain %u within %.1f s\n", o.domain, o.discovery_s);
  }
  return kExitOk;
}

namespace {

// ---- top ---------------------------------------------------------------------------------

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int /*sig*/) { g_stop = true; }

struct TopOptions {
  std::string sort = "cpu";
  double interval_s = 1;
  int iterations = 0;  // 0: until interrupted
  std::string group;
  std::size_t limit = 0;  // VM rows; 0: fit the terminal (or all when not a terminal)
};

double sort_key(const std::string& sort, double cpu, double mem, double disk, double net) {
  if (sort == "mem") return mem;
  if (sort == "disk") return disk;
  if (sort == "net") return net;
  return cpu;
}

void print_top(Manager& m, const TopOptions& t, bool tty, bool json) {
  auto samples = m.samples();
  const auto hosts = m.hosts();
  std::map<std::string, cloudmgr::HostEntry> by_id;
  for (const auto& h : hosts) {
    by_id.emplace(h.view.info.id, h);
  }
  if (!t.group.empty()) {
    std::erase_if(samples, [&](const HostSample& s) {
      auto it = by_id.find(s.host_id);
      return it == by_id.end() || std::find(it->second.view.groups.begin(), it->second.view.groups.end(), t.group) ==
                                      it->second.view.groups.end();
    });
  }
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : samples) {
      j.push_back(to_json(s));
    }
    std::printf("%s\n", nlohmann::json{{"time_ns", now_ns()}, {"hosts", j}}.dump().c_str());
    std::fflush(stdout);
    return;
  }
  // Sorted before VM rows point into it.
  const bool by_name = t.sort == "name";
  std::sort(samples.begin(), samples.end(), [&](const HostSample& a, const HostSample& b) {
    if (by_name) return a.host_id < b.host_id;
    return sort_key(t.sort, a.cpu_pct, static_cast<double>(a.memory_used_bytes),
                    a.disk_read_bytes_per_s + a.disk_write_bytes_per_s, a.net_rx_bytes_per_s + a.net_tx_bytes_per_s) >
           sort_key(t.sort, b.cpu_pct, static_cast<double>(b.memory_used_bytes),
                    b.disk_read_bytes_per_s + b.disk_write_bytes_per_s, b.net_rx_bytes_per_s + b.net_tx_bytes_per_s);
  });
  std::size_t online = 0;
  std::size_t offline = 0;
  for (const auto& h : hosts) {
    (h.online() ? online : offline)++;
  }
  double cpu_busy = 0;
  double cpus = 0;
  std::uint64_t mem_used = 0;
  std::uint64_t mem_total = 0;
  std::size_t running = 0;
  bool simulated = false;
  struct VmRow {
    const VmSample* v;
    const HostSample* h;
  };
  std::vector<VmRow> vms;
  for (const auto& s : samples) {
    cpu_busy += s.cpu_pct * s.cpus;
    cpus += s.cpus;
    mem_used += s.memory_used_bytes;
    mem_total += s.memory_bytes;
    simulated = simulated || s.simulated;
    for (const auto& v : s.vms) {
      running += v.state == cloudmgr::VmState::kRunning ? 1 : 0;
      vms.push_back({&v, &s});
    }
  }
  std::sort(vms.begin(), vms.end(), [&](const VmRow& a, const VmRow& b) {
    if (by_name) return std::tie(a.v->name, a.h->host_id) < std::tie(b.v->name, b.h->host_id);
    const auto key = [&](const VmSample& v) {
      return sort_key(t.sort, v.cpu_host_pct, static_cast<double>(v.memory_used_bytes),
                      v.disk_read_bytes_per_s + v.disk_write_bytes_per_s, v.net_rx_bytes_per_s + v.net_tx_bytes_per_s);
    };
    return key(*a.v) > key(*b.v);
  });

  std::size_t rows = 0;
  if (tty) {
    winsize ws{};
    rows = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 ? ws.ws_row : 24;
    std::printf("\033[H\033[2J");
  }
  std::printf("cloudctl top - %s   hosts: %zu online, %zu offline   VMs: %zu running   CPU %.1f%%   MEM %s / %s%s\n",
              local_time(now_ns()).c_str(), online, offline, running, cpus > 0 ? cpu_busy / cpus : 0.0,
              cloudmgr::format_bytes(mem_used).c_str(), cloudmgr::format_bytes(mem_total).c_str(),
              simulated ? "   (* simulated load)" : "");
  std::printf("\n");
  Table ht({"HOST", "CPUS", "CPU%", "MEM USED", "MEMORY", "DISK READ", "DISK WRITE", "NET RX", "NET TX", "VMS"});
  for (const auto& s : samples) {
    ht.add({s.host_id, std::to_string(s.cpus), pct(s.cpu_pct) + (s.simulated ? "*" : ""),
            cloudmgr::format_bytes(s.memory_used_bytes), cloudmgr::format_bytes(s.memory_bytes),
            rate(s.disk_read_bytes_per_s), rate(s.disk_write_bytes_per_s), rate(s.net_rx_bytes_per_s),
            rate(s.net_tx_bytes_per_s), std::to_string(s.vms.size())});
  }
  ht.print();
  std::printf("\n");
  std::size_t limit = t.limit;
  if (limit == 0 && tty) {
    const std::size_t used = samples.size() + 6;
    limit = rows > used + 2 ? rows - used - 2 : 1;
  }
  Table vt({"VM", "HOST", "STATE", "VCPUS", "CPU%", "HOST CPU%", "MEM USED", "MEMORY", "DISK READ", "DISK WRITE",
            "NET RX", "NET TX"});
  std::size_t shown = 0;
  for (const auto& row : vms) {
    if (limit > 0 && shown == limit) {
      break;
    }
    const VmSample& v = *row.v;
    const std::string mark = row.h->simulated ? "*" : "";
    vt.add({v.name, row.h->host_id, std::string(cloudmgr::to_string(v.state)), std::to_string(v.vcpus),
            v.rates_valid ? pct(v.cpu_pct) + mark : "-", v.rates_valid ? pct(v.cpu_host_pct) + mark : "-",
            cloudmgr::format_bytes(v.memory_used_bytes), cloudmgr::format_bytes(v.memory_bytes),
            rate(v.disk_read_bytes_per_s), rate(v.disk_write_bytes_per_s), rate(v.net_rx_bytes_per_s),
            rate(v.net_tx_bytes_per_s)});
    ++shown;
  }
  vt.print();
  if (shown < vms.size()) {
    std::printf("... %zu more VMs (--limit)\n", vms.size() - shown);
  }
  if (!tty) {
    std::printf("\n");
  }
  std::fflush(stdout);
}

int cmd_top(const Options& o, const TopOptions& t) {
  Session s(o, /*samples=*/true, /*forward=*/false);  // runs until interrupted: its own manager
  if (Status st = s.open(); !st.ok()) {
    return fail(st);
  }
  const bool tty = isatty(STDOUT_FILENO) != 0 && !o.json;
  (void)std::signal(SIGINT, on_stop_signal);
  (void)std::signal(SIGTERM, on_stop_signal);
  const auto period = milliseconds(static_cast<std::int64_t>(t.interval_s * 1000));
  for (int i = 0; (t.iterations == 0 || i < t.iterations) && !g_stop; ++i) {
    if (i > 0) {
      const auto until = std::chrono::steady_clock::now() + period;
      while (!g_stop && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(milliseconds(50));
      }
      if (g_stop) {
        break;
      }
    }
    print_top(s.m(), t, tty, o.json);
  }
  return kExitOk;
}

// ---- history -----------------------------------------------------------------------------

struct Window {
  std::string since = "1h";
  std::string until;  // empty: now
  std::string step;   // empty: chosen by the view
};

struct ResolvedWindow {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;
  std::int64_t step_ns = 0;
};

Result<ResolvedWindow> resolve(const Window& w) {
  ResolvedWindow r;
  const std::int64_t now = now_ns();
  auto since = cloudmgr::parse_duration_ns(w.since);
  if (!since.ok()) {
    return since.status().with_context("--since");
  }
  r.since_ns = now - *since;
  r.until_ns = now;
  if (!w.until.empty()) {
    auto until = cloudmgr::parse_duration_ns(w.until);
    if (!until.ok()) {
      return until.status().with_context("--until");
    }
    r.until_ns = now - *until;
  }
  if (r.until_ns <= r.since_ns) {
    return cloudmgr::invalid_argument_error(
        fmt::format("--since {} and --until {} leave an empty window", w.since, w.until.empty() ? "now" : w.until));
  }
  if (!w.step.empty()) {
    auto step = cloudmgr::parse_duration_ns(w.step);
    if (!step.ok()) {
      return step.status().with_context("--step");
    }
    if (*step <= 0) {
      return cloudmgr::invalid_argument_error("--step must be positive");
    }
    r.step_ns = *step;
  }
  return r;
}

void add_window(CLI::App* cmd, Window& w, const char* default_since) {
  w.since = default_since;
  cmd->add_option("--since", w.since, fmt::format("how far back, e.g. 15m, 2h, 7d (default {})", default_since));
  cmd->add_option("--until", w.until, "end of the window, as an age (default: now)");
  cmd->add_option("--step", w.step, "bucket width, e.g. 10s, 1m, 1h (default: chosen to fit)");
}

// Runs one history query and returns every host's series; per-host errors go to stderr and
// set `rc` (1 for an error, 3 for no reply).
std::vector<HistorySeries> query(Session& s, const Options& o, const Target& target, const HistoryQuery& q, int& rc) {
  cloudmgr::ExecuteOptions eo;
  eo.timeout = milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000));
  auto r = s.m().history(target, q, eo);
  std::vector<HistorySeries> out;
  if (!r.ok()) {
    rc = fail(r.status());
    return out;
  }
  for (const auto& h : r->hosts) {
    if (h.outcome == HostResult::Outcome::kOk) {
      for (const auto& series : h.reply.history) {
        out.push_back(series);
      }
      continue;
    }
    std::fprintf(stderr, "cloudctl: %s: %s\n", h.host_id.c_str(), h.status.to_string().c_str());
    rc = std::max(rc, h.outcome == HostResult::Outcome::kNoReply ? kExitNoReply : kExitFailed);
  }
  return out;
}

// Where a history view looks: a host, a VM (its host found when not given), or a group.
struct Subject {
  std::string host;
  std::string vm;
  std::string group;
};

Result<Target> target_for(Session& s, Subject& subject) {
  if (!subject.group.empty()) {
    if (!subject.host.empty()) {
      return cloudmgr::invalid_argument_error("give --host or --group, not both");
    }
    return Target::group(subject.group);
  }
  if (subject.host.empty()) {
    if (subject.vm.empty()) {
      return cloudmgr::invalid_argument_error("say whose history: --host H, --vm V or --group G");
    }
    auto host = host_of_vm(s.m(), subject.vm);
    if (!host.ok()) {
      return host.status();
    }
    subject.host = *host;
  }
  return Target::host(subject.host);
}

// Opens the session, waiting for the subject's host or group, and resolves its target.
Result<Target> open_for(Session& s, Subject& subject) {
  const auto host = subject.host.empty() ? std::nullopt : std::optional(subject.host);
  const auto group = subject.group.empty() ? std::nullopt : std::optional(subject.group);
  if (Status st = s.open(host, group); !st.ok()) {
    return st;
  }
  return target_for(s, subject);
}

int cmd_history(const Options& o, Subject subject, const Window& w, const std::string& metrics_text) {
  auto win = resolve(w);
  if (!win.ok()) {
    return fail(win.status());
  }
  auto metrics = parse_metrics(metrics_text);
  if (!metrics.ok()) {
    return fail(metrics.status().with_context("--metric"));
  }
  Session s(o);
  auto target = open_for(s, subject);
  if (!target.ok()) {
    return fail(target.status());
  }
  int rc = kExitOk;
  const auto series =
      query(s, o, *target,
            {.vm = subject.vm, .since_ns = win->since_ns, .until_ns = win->until_ns, .step_ns = win->step_ns}, rc);
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& sr : series) {
      j.push_back(to_json(sr));
    }
    print_json(j);
    return rc;
  }
  for (const auto& sr : series) {
    std::printf("%s%s%s: %zu points, %s%s\n", sr.host_id.c_str(), sr.vm_name.empty() ? "" : " / ", sr.vm_name.c_str(),
                sr.points.size(),
                sr.step_ns == 0 ? "raw samples" : ("steps of " + cloudmgr::format_duration_ns(sr.step_ns)).c_str(),
                sr.simulated ? " (simulated load)" : "");
    std::vector<std::string> header{"TIME", "SAMPLES"};
    for (Metric m : *metrics) {
      const std::string name(cloudmgr::to_string(m));
      header.push_back(name + " AVG");
      header.push_back("MIN");
      header.push_back("MAX");
    }
    Table t(header);
    const bool long_window = win->until_ns - win->since_ns > 86400 * kSec;
    for (const auto& p : sr.points) {
      std::vector<std::string> row{local_time(p.start_ns, long_window), std::to_string(p.samples)};
      for (Metric m : *metrics) {
        const auto i = static_cast<std::size_t>(m);
        row.push_back(metric_text(m, p.avg[i]));
        row.push_back(metric_text(m, p.min[i]));
        row.push_back(metric_text(m, p.max[i]));
      }
      t.add(std::move(row));
    }
    t.print();
  }
  return rc;
}

// Usage by host over a period: every host's window folded into one line.
int cmd_monitor_hosts(const Options& o, const std::string& group, const Window& w, const std::string& sort) {
  auto win = resolve(w);
  if (!win.ok()) {
    return fail(win.status());
  }
  Session s(o);
  if (Status st = s.open(std::nullopt, group.empty() ? std::nullopt : std::optional(group)); !st.ok()) {
    return fail(st);
  }
  int rc = kExitOk;
  const Target target = group.empty() ? Target::all() : Target::group(group);
  // One bucket as wide as the window (the store rounds it to its resolution; a window that
  // straddles bucket boundaries comes back as two or three buckets, folded below).
  const auto series =
      query(s, o, target,
            {.since_ns = win->since_ns, .until_ns = win->until_ns, .step_ns = win->until_ns - win->since_ns}, rc);
  struct Folded {
    std::string host;
    std::uint64_t samples = 0;
    cloudmgr::MetricValues min{}, sum{}, max{};
    bool simulated = false;
  };
  std::vector<Folded> rows;
  for (const auto& sr : series) {
    Folded f;
    f.host = sr.host_id;
    f.simulated = sr.simulated;
    f.min.fill(0);
    f.max.fill(0);
    for (const auto& p : sr.points) {
      for (std::size_t i = 0; i < cloudmgr::kMetricCount; ++i) {
        f.min[i] = f.samples == 0 ? p.min[i] : std::min(f.min[i], p.min[i]);
        f.max[i] = f.samples == 0 ? p.max[i] : std::max(f.max[i], p.max[i]);
        f.sum[i] += p.avg[i] * p.samples;
      }
      f.samples += p.samples;
    }
    rows.push_back(f);
  }
  const auto avg = [](const Folded& f, Metric m) {
    return f.samples == 0 ? 0.0 : f.sum[static_cast<std::size_t>(m)] / static_cast<double>(f.samples);
  };
  std::sort(rows.begin(), rows.end(), [&](const Folded& a, const Folded& b) {
    if (sort == "name") return a.host < b.host;
    const auto key = [&](const Folded& f) {
      return sort_key(sort, avg(f, Metric::kCpuPct), avg(f, Metric::kMemoryUsedBytes),
                      avg(f, Metric::kDiskReadBytesPerS) + avg(f, Metric::kDiskWriteBytesPerS),
                      avg(f, Metric::kNetRxBytesPerS) + avg(f, Metric::kNetTxBytesPerS));
    };
    return key(a) > key(b);
  });
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& f : rows) {
      nlohmann::json e{{"host", f.host}, {"samples", f.samples}, {"simulated", f.simulated}};
      for (std::size_t i = 0; i < cloudmgr::kMetricCount; ++i) {
        e[std::string(cloudmgr::to_string(static_cast<Metric>(i)))] = {
            {"min", f.min[i]}, {"avg", avg(f, static_cast<Metric>(i))}, {"max", f.max[i]}};
      }
      j.push_back(e);
    }
    print_json({{"since_ns", win->since_ns}, {"until_ns", win->until_ns}, {"hosts", j}});
    return rc;
  }
  std::printf("usage by host, %s to %s\n", local_time(win->since_ns, true).c_str(),
              local_time(win->until_ns, true).c_str());
  Table t(
      {"HOST", "SAMPLES", "CPU% AVG", "CPU% MAX", "MEM AVG", "MEM MAX", "DISK READ", "DISK WRITE", "NET RX", "NET TX"});
  bool simulated = false;
  for (const auto& f : rows) {
    const std::string mark = f.simulated ? "*" : "";
    simulated = simulated || f.simulated;
    t.add({f.host, std::to_string(f.samples), pct(avg(f, Metric::kCpuPct)) + mark,
           pct(f.max[static_cast<std::size_t>(Metric::kCpuPct)]) + mark,
           metric_text(Metric::kMemoryUsedBytes, avg(f, Metric::kMemoryUsedBytes)),
           metric_text(Metric::kMemoryUsedBytes, f.max[static_cast<std::size_t>(Metric::kMemoryUsedBytes)]),
           rate(avg(f, Metric::kDiskReadBytesPerS)), rate(avg(f, Metric::kDiskWriteBytesPerS)),
           rate(avg(f, Metric::kNetRxBytesPerS)), rate(avg(f, Metric::kNetTxBytesPerS))});
  }
  t.print();
  if (simulated) {
    std::printf("* simulated load (libvirt test driver + load model)\n");
  }
  return rc;
}

int cmd_chart(const Options& o, Subject subject, const Window& w, const std::string& metrics_text,
              const std::string& png, const std::string& svg, int width, int height) {
  auto win = resolve(w);
  if (!win.ok()) {
    return fail(win.status());
  }
  auto metrics = parse_metrics(metrics_text);
  if (!metrics.ok()) {
    return fail(metrics.status().with_context("--metric"));
  }
  if (!png.empty() && !svg.empty()) {
    return fail(cloudmgr::invalid_argument_error("give --png or --svg, not both"));
  }
  const std::string file = png.empty() ? svg : png;
  std::optional<ChartFormat> format;
  if (!file.empty()) {
    auto f = chart_format_for(file);
    if (!f.ok()) {
      return fail(f.status());
    }
    if ((png.empty() ? ChartFormat::kSvg : ChartFormat::kPng) != *f) {
      return fail(cloudmgr::invalid_argument_error(
          fmt::format("'{}' does not end in {}", file, png.empty() ? ".svg" : ".png")));
    }
    format = *f;
  }
  Session s(o);
  auto target = open_for(s, subject);
  if (!target.ok()) {
    return fail(target.status());
  }
  const std::int64_t window = win->until_ns - win->since_ns;
  // About 120 buckets unless told: a readable line at any window.
  const std::int64_t step = win->step_ns > 0 ? win->step_ns : std::max<std::int64_t>(kSec, window / 120);
  int rc = kExitOk;
  const auto series = query(
      s, o, *target, {.vm = subject.vm, .since_ns = win->since_ns, .until_ns = win->until_ns, .step_ns = step}, rc);
  ChartOptions co;
  std::string what = !subject.group.empty() ? "group " + subject.group
                     : !subject.vm.empty()  ? subject.vm + " on " + subject.host
                                            : subject.host;
  std::string names;
  for (Metric m : *metrics) {
    names += (names.empty() ? "" : ", ") + std::string(cloudmgr::to_string(m));
  }
  const std::int64_t used_step = series.empty() ? step : series.front().step_ns;
  co.title = fmt::format("{}: {}, last {} ({} steps)", what, names, cloudmgr::format_duration_ns(window),
                         used_step == 0 ? std::string("raw") : cloudmgr::format_duration_ns(used_step));
  co.metrics = *metrics;
  co.width = width;
  co.height = height;
  co.color = isatty(STDOUT_FILENO) != 0 && format == std::nullopt;
  if (format) {
    if (Status st = write_chart(series, co, *format, file); !st.ok()) {
      return fail(st);
    }
    std::printf("wrote %s (%zu series)\n", file.c_str(), series.size());
    return rc;
  }
  std::fputs(render_terminal_chart(series, co).c_str(), stdout);
  return rc;
}

}  // namespace

void add_monitor_commands(CLI::App& app, Options& o, int& rc) {
  auto& top_options = per_call<TopOptions>();
  auto* top = app.add_subcommand("top", "a live view of the whole cloud: hosts and VMs by CPU, memory, disk, network");
  top->add_option("--sort", top_options.sort, "cpu (default), mem, disk, net or name")
      ->check(CLI::IsMember({"cpu", "mem", "disk", "net", "name"}));
  top->add_option("--interval", top_options.interval_s, "seconds between refreshes (default 1)")
      ->check(CLI::Range(0.1, 3600.0));
  top->add_option("-n,--iterations", top_options.iterations, "refresh this many times, then exit (default: until ^C)")
      ->check(CLI::NonNegativeNumber);
  top->add_option("--group", top_options.group, "only the hosts of this group");
  top->add_option("--limit", top_options.limit, "VM rows (default: what fits the terminal)");
  top->callback([&] { rc = cmd_top(o, top_options); });

  auto* monitor = app.add_subcommand("monitor", "monitoring history: usage by host, series, charts");
  monitor->require_subcommand(1);

  auto& hosts_window = per_call<Window>();
  auto& hosts_group = per_call<std::string>();
  auto& hosts_sort = per_call<std::string>("cpu");
  auto* mh = monitor->add_subcommand("hosts", "usage by host over a period (min / avg / max)");
  add_window(mh, hosts_window, "1h");
  mh->add_option("--group", hosts_group, "only this group's hosts");
  mh->add_option("--sort", hosts_sort, "cpu (default), mem, disk, net or name")
      ->check(CLI::IsMember({"cpu", "mem", "disk", "net", "name"}));
  mh->callback([&] { rc = cmd_monitor_hosts(o, hosts_group, hosts_window, hosts_sort); });

  auto& history_subject = per_call<Subject>();
  auto& history_window = per_call<Window>();
  auto& history_metrics = per_call<std::string>("cpu,mem");
  auto* hist = monitor->add_subcommand("history", "a host's or a VM's history as a table");
  hist->add_option("--host", history_subject.host, "the host");
  hist->add_option("--vm", history_subject.vm, "a VM (name or uuid); its host is found when --host is not given");
  add_window(hist, history_window, "1h");
  hist->add_option("--metric", history_metrics,
                   "comma-separated: cpu, mem, disk_read, disk_write, disk_read_ops, disk_write_ops, net_rx, net_tx, "
                   "or all (default cpu,mem)");
  hist->callback([&] { rc = cmd_history(o, history_subject, history_window, history_metrics); });

  auto& chart_subject = per_call<Subject>();
  auto& chart_window = per_call<Window>();
  auto& chart_metrics = per_call<std::string>("cpu,mem");
  auto& png = per_call<std::string>();
  auto& svg = per_call<std::string>();
  auto& width = per_call<int>(0);
  auto& height = per_call<int>(0);
  auto* chart = monitor->add_subcommand("chart", "CPU and memory by time for a host, a VM or a group, as a chart");
  chart->add_option("--host", chart_subject.host, "the host");
  chart->add_option("--vm", chart_subject.vm, "a VM (name or uuid)");
  chart->add_option("--group", chart_subject.group, "every host of a group, one line each");
  add_window(chart, chart_window, "1h");
  chart->add_option("--metric", chart_metrics, "panels, comma-separated (default cpu,mem; see monitor history)");
  chart->add_option("--png", png, "write a PNG file instead of drawing in the terminal");
  chart->add_option("--svg", svg, "write an SVG file instead of drawing in the terminal");
  chart->add_option("--width", width, "columns (terminal) or pixels (files)")->check(CLI::NonNegativeNumber);
  chart->add_option("--height", height, "rows (terminal) or pixels (files)")->check(CLI::NonNegativeNumber);
  chart->callback([&] { rc = cmd_chart(o, chart_subject, chart_window, chart_metrics, png, svg, width, height); });
}

}  // namespace cloudctl
