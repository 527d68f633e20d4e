// cloudmgr-agent: the per-host hypervisor manager.
//
// Settings come from a JSON config file (--config) and flags; a flag wins over the file.
//   {
//     "host_id": "node1", "uri": "qemu:///system", "groups": ["web"],
//     "state_dir": "/var/lib/cloudmgr", "domain_id": 0,
//     "interfaces": ["127.0.0.1"], "shared_memory": true, "discovery": "multicast",
//     "initial_peers": [], "lease_ms": 2000, "announce_ms": 500, "refresh_ms": 5000,
//     "allow_host_reboot": false, "reboot_command": ["/usr/bin/systemctl", "reboot"],
//     "sample_ms": 1000, "history": true, "history_raw": "1h", "history_rollup_step": "1m",
//     "history_rollup": "30d", "simulated_load": "auto",
//     "image_dir": "/var/lib/cloudmgr/images", "storage_pool": "cloudmgr-node1",
//     "pki": "/etc/cloudmgr/pki", "heal_after_ms": 15000,
//     "transport": "dds", "tcp_listen": "127.0.0.1:0", "tcp_directory": "/run/cloudmgr/agents"
//   }
// Runs until SIGINT/SIGTERM, then leaves cleanly (managers see the host go at once).
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloudmgr/cloudmgr.h"

namespace {

void log_line(const std::string& line) {
  static std::mutex mutex;
  const std::lock_guard lock(mutex);
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(stdout, "%s %s\n", stamp, line.c_str());
  std::fflush(stdout);
}

// Applies the config file to `o`; every key optional. kInvalidArgument naming the key.
cloudmgr::Status load_config(const std::string& path, cloudmgr::AgentOptions& o) {
  std::ifstream in(path);
  if (!in) {
    return cloudmgr::invalid_argument_error(fmt::format("cannot read the config file '{}'", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  const auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (!j.is_object()) {
    return cloudmgr::invalid_argument_error(fmt::format("config file '{}' is not a JSON object", path));
  }
  static const std::set<std::string> known_keys = {"host_id",
                                                   "uri",
                                                   "groups",
                                                   "state_dir",
                                                   "domain_id",
                                                   "interfaces",
                                                   "shared_memory",
                                                   "discovery",
                                                   "initial_peers",
                                                   "lease_ms",
                                                   "announce_ms",
                                                   "heal_after_ms",
                                                   "refresh_ms",
                                                   "allow_host_reboot",
                                                   "reboot_command",
                                                   "sample_ms",
                                                   "history",
                                                   "history_raw",
                                                   "history_rollup_step",
                                                   "history_rollup",
                                                   "simulated_load",
                                                   "image_dir",
                                                   "storage_pool",
                                                   "pki",
                                                   "transport",
                                                   "tcp_listen",
                                                   "tcp_directory"};
  try {
    for (const auto& [key, value] : j.items()) {
      if (!known_keys.contains(key)) {
        return cloudmgr::invalid_argument_error(fmt::format("config file '{}': unknown key '{}'", path, key));
      }
    }
    if (j.contains("host_id")) o.hypervisor.host_id = j["host_id"].get<std::string>();
    if (j.contains("uri")) o.hypervisor.uri = j["uri"].get<std::string>();
    if (j.contains("groups")) o.groups = j["groups"].get<std::vector<std::string>>();
    if (j.contains("state_dir")) o.state_dir = j["state_dir"].get<std::string>();
    if (j.contains("image_dir")) o.image_dir = j["image_dir"].get<std::string>();
    if (j.contains("storage_pool")) o.storage_pool = j["storage_pool"].get<std::string>();
    if (j.contains("domain_id")) o.transport.domain_id = j["domain_id"].get<std::uint32_t>();
    if (j.contains("interfaces")) o.transport.interfaces = j["interfaces"].get<std::vector<std::string>>();
    if (j.contains("shared_memory")) o.transport.shared_memory = j["shared_memory"].get<bool>();
    if (j.contains("initial_peers")) o.transport.initial_peers = j["initial_peers"].get<std::vector<std::string>>();
    if (j.contains("discovery")) {
      const auto d = j["discovery"].get<std::string>();
      if (d != "multicast" && d != "star") {
        return cloudmgr::invalid_argument_error(
            fmt::format("config file '{}': discovery '{}' is not \"multicast\" or \"star\"", path, d));
      }
      o.transport.discovery = d == "star" ? cloudmgr::spi::TransportConfig::Discovery::kStar
                                          : cloudmgr::spi::TransportConfig::Discovery::kMulticast;
    }
    if (j.contains("pki")) o.transport.pki_dir = j["pki"].get<std::string>();
    if (j.contains("transport")) o.transport.kind = j["transport"].get<std::string>();
    if (j.contains("tcp_listen")) o.transport.tcp.listen = j["tcp_listen"].get<std::string>();
    if (j.contains("tcp_directory")) o.transport.tcp.directory = j["tcp_directory"].get<std::string>();
    if (j.contains("lease_ms")) o.transport.agent_lease_ms = j["lease_ms"].get<std::uint32_t>();
    if (j.contains("announce_ms")) o.transport.announce_period_ms = j["announce_ms"].get<std::uint32_t>();
    if (j.contains("heal_after_ms")) o.heal_after_ms = j["heal_after_ms"].get<std::uint32_t>();
    if (j.contains("refresh_ms")) o.refresh_ms = j["refresh_ms"].get<std::uint32_t>();
    if (j.contains("allow_host_reboot")) o.hypervisor.reboot.enabled = j["allow_host_reboot"].get<bool>();
    if (j.contains("reboot_command")) o.hypervisor.reboot.command = j["reboot_command"].get<std::vector<std::string>>();
    if (j.contains("sample_ms")) o.sample_ms = j["sample_ms"].get<std::uint32_t>();
    if (j.contains("history")) o.history = j["history"].get<bool>();
    for (const auto& [key, field] :
         {std::pair{"history_raw", &o.retention.raw_ns}, std::pair{"history_rollup_step", &o.retention.rollup_step_ns},
          std::pair{"history_rollup", &o.retention.rollup_ns}}) {
      if (j.contains(key)) {
        auto d = cloudmgr::parse_duration_ns(j[key].get<std::string>());
        if (!d.ok()) {
          return cloudmgr::invalid_argument_error(
              fmt::format("config file '{}': {}: {}", path, key, d.status().message()));
        }
        *field = *d;
      }
    }
    if (j.contains("simulated_load")) {
      const auto v = j["simulated_load"].get<std::string>();
      using Sim = cloudmgr::HypervisorOptions::SimulatedLoad;
      if (v != "auto" && v != "on" && v != "off") {
        return cloudmgr::invalid_argument_error(
            fmt::format("config file '{}': simulated_load '{}' is not \"auto\", \"on\" or \"off\"", path, v));
      }
      o.hypervisor.simulated_load = v == "on" ? Sim::kOn : v == "off" ? Sim::kOff : Sim::kAuto;
    }
  } catch (const nlohmann::json::exception& e) {
    return cloudmgr::invalid_argument_error(fmt::format("config file '{}': {}", path, e.what()));
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cloudmgr-agent: manages one hypervisor host for libcloudmgr"};
  std::string config;
  std::string host_id, uri, state_dir, transport_kind;
  std::vector<std::string> groups;
  std::optional<std::uint32_t> domain_id;
  bool allow_reboot = false;
  std::optional<std::uint32_t> sample_ms, lease_ms, announce_ms, heal_after_ms;
  std::vector<std::string> star;
  std::string history_raw, history_step, history_rollup;
  std::string image_dir, storage_pool, pki_dir, tcp_listen, tcp_directory;
  app.add_option("--config", config, "JSON config file (flags override it)");
  app.add_option("--host-id", host_id, "this host's cloud-wide id");
  app.add_option("--uri", uri, "libvirt URI of this host's hypervisor, e.g. qemu:///system");
  app.add_option("--group", groups, "a group this host starts in (repeatable; persisted groups win)");
  app.add_option("--state-dir", state_dir, "directory for groups and the command journal");
  app.add_option("--domain", domain_id, "DDS domain id");
  app.add_option("--transport", transport_kind, "dds (default) or tcp (client-server: managers connect to this agent)")
      ->check(CLI::IsMember({"dds", "tcp"}));
  app.add_option("--tcp-listen", tcp_listen, "tcp: the ADDRESS:PORT to listen on (default 127.0.0.1:0, any free port)");
  app.add_option("--tcp-directory", tcp_directory,
                 "tcp: record this agent's address in DIR/HOST-ID.addr, where managers look (removed on a clean stop)");
  app.add_option("--pki", pki_dir,
                 "the cloud's PKI directory: run secured as identity agent.HOST-ID (cloudctl pki issue agent HOST-ID)");
  app.add_option("--star", star,
                 "star discovery: a manager address to announce to (repeatable; no multicast, agents never meet "
                 "each other)");
  app.add_option("--heal-after-ms", heal_after_ms,
                 "secured: renew the DDS participant when a manager is still unmatched after this long (default "
                 "15000; 0 = never)");
  app.add_flag("--allow-host-reboot", allow_reboot, "allow managers to reboot this host");
  app.add_option("--sample-ms", sample_ms, "monitoring tick in ms (default 1000; 0 = no monitoring)");
  app.add_option("--lease-ms", lease_ms, "offline after this long without announcements (default 2000)");
  app.add_option("--announce-ms", announce_ms, "announcement period (default 500)");
  app.add_option("--history-raw", history_raw, "keep every sample this long (default 1h)");
  app.add_option("--history-rollup-step", history_step, "rollup resolution (default 1m)");
  app.add_option("--history-rollup", history_rollup, "keep rollups this long (default 30d)");
  app.add_option("--image-dir", image_dir,
                 "templates: base images and VM clones, readable by the hypervisor (default STATE_DIR/images)");
  app.add_option("--storage-pool", storage_pool,
                 "templates: the hypervisor storage pool over it (default cloudmgr-HOST)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  cloudmgr::AgentOptions o;
  o.hypervisor.uri.clear();
  if (!config.empty()) {
    if (auto s = load_config(config, o); !s.ok()) {
      std::fprintf(stderr, "cloudmgr-agent: %s\n", s.to_string().c_str());
      return 2;
    }
  }
  if (!host_id.empty()) o.hypervisor.host_id = host_id;
  if (!uri.empty()) o.hypervisor.uri = uri;
  if (!groups.empty()) o.groups = groups;
  if (!state_dir.empty()) o.state_dir = state_dir;
  if (!image_dir.empty()) o.image_dir = image_dir;
  if (!storage_pool.empty()) o.storage_pool = storage_pool;
  if (domain_id) o.transport.domain_id = *domain_id;
  if (!transport_kind.empty()) o.transport.kind = transport_kind;
  if (!pki_dir.empty()) o.transport.pki_dir = pki_dir;
  if (!tcp_listen.empty()) o.transport.tcp.listen = tcp_listen;
  if (!tcp_directory.empty()) o.transport.tcp.directory = tcp_directory;
  if (allow_reboot) o.hypervisor.reboot.enabled = true;
  if (sample_ms) o.sample_ms = *sample_ms;
  if (lease_ms) o.transport.agent_lease_ms = *lease_ms;
  if (announce_ms) o.transport.announce_period_ms = *announce_ms;
  if (heal_after_ms) o.heal_after_ms = *heal_after_ms;
  if (!star.empty()) {
    o.transport.discovery = cloudmgr::spi::TransportConfig::Discovery::kStar;
    o.transport.initial_peers = star;
  }
  for (const auto& [flag, text, field] :
       {std::tuple{"--history-raw", &history_raw, &o.retention.raw_ns},
        std::tuple{"--history-rollup-step", &history_step, &o.retention.rollup_step_ns},
        std::tuple{"--history-rollup", &history_rollup, &o.retention.rollup_ns}}) {
    if (!text->empty()) {
      auto d = cloudmgr::parse_duration_ns(*text);
      if (!d.ok()) {
        std::fprintf(stderr, "cloudmgr-agent: %s: %s\n", flag, d.status().message().c_str());
        return 2;
      }
      *field = *d;
    }
  }
  if (o.hypervisor.uri.empty() || o.hypervisor.host_id.empty() || o.state_dir.empty()) {
    std::fprintf(stderr, "cloudmgr-agent: --uri, --host-id and --state-dir (or the config file) are required\n");
    return 2;
  }

  // Block the stop signals in every thread (threads inherit the mask), then wait for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto agent = cloudmgr::Agent::start(o);
  if (!agent.ok()) {
    std::fprintf(stderr, "cloudmgr-agent: %s\n", agent.status().to_string().c_str());
    return 1;
  }
  std::string group_list;
  for (const auto& g : (*agent)->groups()) {
    group_list += (group_list.empty() ? "" : ",") + g;
  }
  log_line(fmt::format("agent {} started: host {} on {} (domain {}, groups [{}])", cloudmgr::version(),
                       (*agent)->host_id(), o.hypervisor.uri, o.transport.domain_id, group_list));
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log_line(fmt::format("agent stopping on signal {} after {} command(s)", sig, (*agent)->commands_executed()));
  // A stop must end the process: if leaving the cloud hangs, exit anyway after 15 s.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(15));
    log_line("agent stop took longer than 15 s; exiting without a clean leave");
    std::_Exit(1);
  }).detach();
  agent->reset();
  log_line("agent stopped");
  return 0;
}
