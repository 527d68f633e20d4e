// What every cloudctl command shares: global options, exit codes, the Session (a Manager
// that has heard from the cloud) and small formatting helpers.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloudmgr/cloudmgr.h"

namespace cloudctl {

using cloudmgr::Manager;
using cloudmgr::now_ns;
using cloudmgr::Result;
using cloudmgr::Status;
using std::chrono::milliseconds;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoReply = 3;

struct Options {
  std::uint32_t domain = 0;
  std::string transport = "dds";
  bool json = false;
  // The hosts this cloud had (ManagerOptions::inventory_path): empty = the default path,
  // "none" = no inventory.
  std::string inventory;
  double timeout_s = 10;
  double discovery_s = 3;
  // The template store's directory: empty = the default (template_store_dir).
  std::string store;
  // DDS-Security: the PKI directory (--pki, $CLOUDMGR_PKI; empty = unsecured) and the
  // manager identity in it (--identity, $CLOUDMGR_IDENTITY, default "admin").
  std::string pki;
  std::string identity = "admin";
  // Star discovery (--star, $CLOUDMGR_STAR): the managers' addresses; empty = multicast.
  std::vector<std::string> star;
  // The client-server transport (--transport tcp): the agents' addresses (--tcp-peer,
  // $CLOUDMGR_TCP_PEERS), the directory where agents record theirs (--tcp-directory,
  // $CLOUDMGR_TCP_DIRECTORY), and a connection per request (--tcp-per-request).
  std::vector<std::string> tcp_peers;
  std::string tcp_directory;
  bool tcp_per_request = false;
  // The local daemon (daemon.h): its socket (--daemon, $CLOUDMGR_DAEMON; empty = the default
  // path), or none with --no-daemon ($CLOUDMGR_DAEMON=off).
  std::string daemon;
  bool no_daemon = false;
};

// The environment cloudctl reads: this process's own, or, while a daemon serves a call, the
// caller's (the variables it forwarded; daemon.cpp).
const char* env(const char* name);

// While a daemon serves a call, the Manager every Session of the call uses; null otherwise.
Manager* served_manager();

// Hands this call to a daemon serving the cloud `o` names: the exit code of the command it ran,
// or nullopt when no daemon serves it (none listening, another cloud, --no-daemon).
std::optional<int> forward_to_daemon(const Options& o);

// Where subcommands keep the options of one command line: a daemon parses many in one process,
// so they cannot be function statics. Emptied at the start of each command line (daemon.cpp).
std::vector<std::shared_ptr<void>>& call_storage();
template <typename T>
T& per_call(T init = T{}) {
  auto p = std::make_shared<T>(std::move(init));
  T& ref = *p;
  call_storage().push_back(std::move(p));
  return ref;
}

// Thrown by Session::open once a daemon has run the call; main returns its exit code.
struct Forwarded {
  int exit_code;
};

// --store, else $CLOUDMGR_TEMPLATES, else $XDG_DATA_HOME (or ~/.local/share)/cloudmgr/templates.
inline std::string template_store_dir(const Options& o) {
  if (!o.store.empty()) {
    return o.store;
  }
  if (const char* v = env("CLOUDMGR_TEMPLATES"); v != nullptr && *v != '\0') {
    return v;
  }
  if (const char* xdg = env("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/cloudmgr/templates";
  }
  if (const char* home = env("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.local/share/cloudmgr/templates";
  }
  return "cloudmgr-templates";
}

// $CLOUDMGR_INVENTORY, else $XDG_STATE_HOME (or ~/.local/state)/cloudmgr/inventory-<domain>.json;
// its directory is created. Empty when there is no home to keep it in.
inline std::string inventory_path(const Options& o) {
  if (o.inventory == "none") {
    return {};
  }
  if (!o.inventory.empty()) {
    return o.inventory;
  }
  std::string dir;
  if (const char* v = env("CLOUDMGR_INVENTORY")) {
    return v;
  }
  if (const char* xdg = env("XDG_STATE_HOME"); xdg != nullptr && *xdg != '\0') {
    dir = std::string(xdg) + "/cloudmgr";
  } else if (const char* home = env("HOME"); home != nullptr && *home != '\0') {
    dir = std::string(home) + "/.local/state/cloudmgr";
  } else {
    return {};
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return ec ? std::string() : fmt::format("{}/inventory-{}.json", dir, o.domain);
}

inline int fail(const Status& status) {
  std::fprintf(stderr, "cloudctl: %s\n", status.to_string().c_str());
  return kExitFailed;
}

inline void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

inline std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : sep) + s;
  }
  return out;
}

// A Manager that has heard from the cloud: it waits for `host` (when given) or for the
// set of hosts to stop growing, bounded by the discovery time.
class Session {
 public:
  // `samples`: also receive the hosts' monitoring ticks (views that show usage). `forward`:
  // a daemon serving the cloud may run the call (false for views that run until interrupted).
  explicit Session(const Options& o, bool samples = false, bool forward = true)
      : o_(o), samples_(samples), forward_(forward) {}

  // Uses the daemon's Manager while it serves a call, else hands the whole call to a daemon
  // serving this cloud (throws Forwarded with its exit code), else opens a Manager of its own.
  // Secured, a handshake Fast DDS 2.9.1 lost for good leaves an agent unseen: once the cloud
  // has settled, an agent discovered whose host record has not arrived is healed with a new
  // participant (twice at most).
  Status open(const std::optional<std::string>& host = std::nullopt,
              const std::optional<std::string>& group = std::nullopt) {
    if (Manager* served = served_manager()) {
      served_ = served;
      return wait_for(host, group);
    }
    if (forward_) {
      if (std::optional<int> rc = forward_to_daemon(o_)) {
        throw Forwarded{*rc};
      }
    }
    constexpr int kAttempts = 3;
    for (int attempt = 1;; ++attempt) {
      if (Status s = open_once(host, group); !s.ok()) {
        return s;
      }
      if (o_.pki.empty() || attempt == kAttempts) {
        return {};
      }
      const std::vector<std::string> stalled = m_->unreached_agents(milliseconds(1000));
      if (stalled.empty()) {
        return {};
      }
      std::fprintf(stderr, "cloudctl: secure handshake with %s stalled (Fast DDS 2.9.1 loses some); reconnecting\n",
                   join(stalled, ", ").c_str());
      m_.reset();
    }
  }

 private:
  Status open_once(const std::optional<std::string>& host, const std::optional<std::string>& group) {
    cloudmgr::spi::TransportConfig t;
    t.kind = o_.transport;
    t.domain_id = o_.domain;
    t.pki_dir = o_.pki;
    if (!o_.star.empty()) {
      t.discovery = cloudmgr::spi::TransportConfig::Discovery::kStar;
      t.initial_peers = o_.star;
    }
    t.tcp.peers = o_.tcp_peers;
    t.tcp.directory = o_.tcp_directory;
    t.tcp.per_request = o_.tcp_per_request;
    // Secured, the manager's name is its authenticated identity.
    auto opened = Manager::open({.transport = t,
                                 .name = o_.pki.empty() ? fmt::format("cloudctl-{}", getpid()) : o_.identity,
                                 .samples = samples_,
                                 .inventory_path = inventory_path(o_),
                                 .template_dir = template_store_dir(o_)});
    if (!opened.ok()) {
      return opened.status();
    }
    m_ = std::move(*opened);
    const auto budget = milliseconds(static_cast<std::int64_t>(o_.discovery_s * 1000));
    if (Status s = wait_for(host, group); !s.ok()) {
      return s;
    }
    // Let the rest of the cloud arrive: stop once no new host appeared for a while.
    const auto end = std::chrono::steady_clock::now() + budget;
    const auto online = [](const Manager& m) {
      const auto hosts = m.hosts();
      return static_cast<std::size_t>(
          std::count_if(hosts.begin(), hosts.end(), [](const cloudmgr::HostEntry& h) { return h.online(); }));
    };
    std::size_t seen = online(*m_);
    while (std::chrono::steady_clock::now() < end) {
      // Agents are discovered one by one; a short-lived manager cannot know how many there
      // are, so it waits until none has appeared for a while: a second, or two when secured
      // (Fast DDS 2.9.1 resends a secure handshake message that found the peer not ready after
      // 0.5 s, then 1 s, 2 s, ...: measured here, a fresh secured manager met the last of 4
      // agents up to 1.1 s after the first).
      const auto settle = milliseconds(o_.pki.empty() ? 1000 : 2000);
      const Status s = m_->wait_until(
          [&](const Manager& m) { return online(m) > seen; },
          std::min(settle, std::chrono::duration_cast<milliseconds>(end - std::chrono::steady_clock::now())));
      if (!s.ok()) {
        if (seen > 0) {
          break;
        }
        continue;
      }
      seen = online(*m_);
    }
    if (!o_.pki.empty()) {
      // Agents discovered whose host record has not arrived are still in their secure handshake
      // (Fast DDS 2.9.1 resends a handshake message after 0.5 s, then 1 s, 2 s, 4 s: measured
      // here, a fresh secured manager meeting 32 agents at once had the last of them up to 8 s
      // later): wait for those, at most that long.
      constexpr milliseconds kHandshakeWait{8000};
      (void)m_->wait_until([](const Manager& m) { return m.unreached_agents(milliseconds(0)).empty(); },
                           kHandshakeWait);
    }
    if (samples_) {
      // Each online host's latest tick is durable: it follows its host record closely.
      (void)m_->wait_until(
          [](const Manager& m) {
            for (const auto& h : m.hosts()) {
              if (h.online() && !m.sample(h.view.info.id)) {
                return false;
              }
            }
            return true;
          },
          std::min(budget, milliseconds(1500)));
    }
    return {};
  }

  // Until `host` is online and `group` known, bounded by the discovery time each.
  Status wait_for(const std::optional<std::string>& host, const std::optional<std::string>& group) {
    const auto budget = milliseconds(static_cast<std::int64_t>(o_.discovery_s * 1000));
    if (host) {
      if (!m().wait_until([&](const Manager& m) { return m.host(*host) && m.host(*host)->online(); }, budget).ok()) {
        return cloudmgr::not_found_error(
            fmt::format("host '{}' is not online (waited {:.1f} s for it)", *host, o_.discovery_s));
      }
    }
    if (group) {
      (void)m().wait_until([&](const Manager& m) { return m.groups().contains(*group); }, budget);
    }
    return {};
  }

 public:
  Manager& m() { return served_ != nullptr ? *served_ : *m_; }

 private:
  const Options& o_;
  bool samples_ = false;
  bool forward_ = true;
  Manager* served_ = nullptr;  // the daemon's, while it serves a call
  std::unique_ptr<Manager> m_;
};

inline std::string cpu_seconds(std::uint64_t ns) { return fmt::format("{:.1f}s", static_cast<double>(ns) / 1e9); }

inline std::string ago(std::int64_t ns) {
  const double s = static_cast<double>(now_ns() - ns) / 1e9;
  return s < 0 ? "now" : fmt::format("{:.1f}s ago", s);
}

// The host a VM lives on, when the user did not say.
inline Result<std::string> host_of_vm(Manager& m, const std::string& vm) {
  std::vector<std::string> hosts;
  for (const auto& v : m.vms()) {
    if (v.vm.name == vm || v.vm.uuid == vm) {
      hosts.push_back(v.host_id);
    }
  }
  if (hosts.empty()) {
    return cloudmgr::not_found_error(fmt::format("no online host has a VM '{}'", vm));
  }
  if (hosts.size() > 1) {
    return cloudmgr::invalid_argument_error(
        fmt::format("VM '{}' exists on hosts {}; choose one with --host", vm, join(hosts, ", ")));
  }
  return hosts.front();
}

}  // namespace cloudctl
