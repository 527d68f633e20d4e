// Plug-in interface: how managers and agents exchange state, commands and replies.
//
// The Fast DDS implementation (lib/transport/dds) is the default; an in-process one
// (lib/transport/inproc) serves unit tests; a client-server one over TCP or TLS
// (lib/transport/tcp) is the baseline the benchmarks compare DDS with. Nothing above this
// interface knows which one runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/cloud.h"
#include "cloudmgr/export.h"
#include "cloudmgr/status.h"

namespace cloudmgr::spi {

// How a participant joins the data space. Defaults keep every packet on this machine:
// UDP on the loopback interface only, plus shared memory.
struct TransportConfig {
  std::string kind = "dds";     // "dds", "tcp" or "inproc"
  std::uint32_t domain_id = 0;  // 0-232
  // Interfaces (IPv4 addresses) UDP may use; never empty. Multicast discovery stays on them.
  std::vector<std::string> interfaces{"127.0.0.1"};
  // Unicast discovery peers ("127.0.0.1", "10.0.0.5"); used by the star profile.
  std::vector<std::string> initial_peers;
  bool shared_memory = true;
  enum class Discovery : std::uint8_t {
    kMulticast = 0,  // zero configuration, small clouds: builtin multicast on the whitelisted interfaces
    kStar,           // managers at known addresses, agents announce only to them (no multicast)
  };
  Discovery discovery = Discovery::kMulticast;
  // An agent that stops announcing itself for this long is taken as gone (offline).
  std::uint32_t agent_lease_ms = 2000;
  // How often participants announce themselves (must be well under the lease: a few
  // announcements may be lost before the lease runs out).
  std::uint32_t announce_period_ms = 500;
  // DDS-Security (docs/security.md): the cloud's PKI directory (cloudmgr/pki.h). Empty:
  // unsecured; anyone who reaches the DDS network reads everything and commands every host,
  // and the transport says so on stderr when it opens.
  std::string pki_dir;
  // This participant's identity in the PKI: "<role>.<name>" ("agent.node1",
  // "manager.admin"). Agent and Manager fill it in when empty (agent.<host id>,
  // manager.<name>). Secured, a link of another identity is refused: an agent link only
  // for its own host, a manager link only under a manager identity.
  std::string identity;

  // The client-server transport (kind "tcp"): agents listen, managers connect to them. With a
  // PKI every connection is TLS 1.3 with mutual authentication by the same identities.
  // announce_period_ms is the heartbeat (and, per request, the poll) period; agent_lease_ms
  // how long a silent connection lives.
  struct Tcp {
    // Agent: the IPv4 address:port to listen on; port 0 takes any free port.
    std::string listen = "127.0.0.1:0";
    // Manager: agents' "address:port".
    std::vector<std::string> peers;
    // Both: a directory where each agent records its address (<dir>/<host id>.addr, removed
    // when it leaves) and that managers read every announce period, in addition to `peers`.
    // For clouds on one machine or a shared file system.
    std::string directory;
    // Manager: a new connection for each request, one host after another, and every host's
    // state polled each announce period (the CIM-XML-over-HTTP pattern), instead of one
    // persistent connection per agent, used in parallel, over which agents push their state.
    bool per_request = false;
  };
  Tcp tcp;
};

// An agent's side of the transport, for one host. Thread-safe.
class CLOUDMGR_API AgentLink {
 public:
  AgentLink() = default;
  virtual ~AgentLink();  // leaves without disposing (as a crash would look) unless leave() ran
  AgentLink(const AgentLink&) = delete;
  AgentLink& operator=(const AgentLink&) = delete;

  // Publishes (replaces) the host's record; its groups become the command subscription.
  virtual Status publish_host(const HostView& host) = 0;
  virtual Status publish_vm(const VmView& vm) = 0;
  // The VM is gone from this host (undefined): managers drop it.
  virtual Status remove_vm(std::string_view uuid) = 0;
  // Commands for these groups reach this agent from now on (and for no others), in
  // addition to "host.<id>" and "all".
  virtual Status set_groups(const std::vector<std::string>& groups) = 0;
  virtual Status reply(const CommandReply& reply) = 0;
  // Publishes one monitoring tick of this host (replaces the previous one for late
  // joiners). Default: kUnimplemented.
  virtual Status publish_sample(const HostSample& sample);
  // Publishes (replaces) the list of base images this host has cached. Default: kUnimplemented.
  virtual Status publish_images(const HostImages& images);
  // Sends a piece of an image to the managers (a VM's disk being captured); blocks while
  // the managers' readers are full (flow control), at most until `deadline_ns`.
  // Default: kUnimplemented.
  virtual Status send_chunk(const ImageChunk& chunk, std::int64_t deadline_ns);
  // Clean shutdown: disposes the host and its VMs so managers see the host leave at once.
  virtual Status leave() = 0;
  // Secured transports: the identities ("manager.admin") of managers this participant
  // discovered at least `min_age` ago that have not matched this host's state (a manager's
  // state reader reads every host), and did not fail authentication. Fast DDS 2.9.1 loses some
  // secure handshakes for good (shared/FACTS.md); the agent heals that with a new participant.
  // Default: none.
  virtual std::vector<std::string> unreached_managers(std::chrono::milliseconds min_age) const;
};

struct AgentCallbacks {
  // Called for each command addressed to this host, its groups or all, one at a time, on a
  // transport thread that may be the one receiving from the network: it must only queue the
  // command and return, never run it. A command may be delivered more than once.
  std::function<void(const Command&)> on_command;
  // Called for each image piece sent to this host, on a transport thread, one at a time.
  std::function<void(const ImageChunk&)> on_chunk;
};

// A manager's side of the transport. Thread-safe.
class CLOUDMGR_API ManagerLink {
 public:
  ManagerLink() = default;
  virtual ~ManagerLink();
  ManagerLink(const ManagerLink&) = delete;
  ManagerLink& operator=(const ManagerLink&) = delete;

  // Sends `command` to its target. `expected_hosts` are the hosts that should receive it;
  // the transport waits (at most until the command's deadline) until it can reach each of
  // them (on DDS: until a reader of that host is matched in the target partition), then
  // writes once. Hosts it could not reach simply never reply.
  virtual Status send(const Command& command, const std::vector<std::string>& expected_hosts) = 0;
  // The same when it needs no wait: every expected host is reachable now. The send's status
  // then; nullopt when send() would have to wait (nothing was sent: the caller uses send(), on a
  // thread that may wait). Lets the Manager send on the caller's thread, without a thread hop,
  // in the common case. Default: nullopt.
  virtual std::optional<Status> send_if_ready(const Command& command, const std::vector<std::string>& expected_hosts);
  // Sends a piece of an image to each of `hosts`: waits until each one's reader is matched,
  // and blocks while a reader is full (flow control), at most until `deadline_ns`
  // (kDeadlineExceeded, naming the hosts not reached). Default: kUnimplemented.
  virtual Status send_chunk(const ImageChunk& chunk, const std::vector<std::string>& hosts, std::int64_t deadline_ns);
  // Secured transports: the identities ("agent.node1") of agents this participant discovered
  // at least `min_age` ago whose host record has not arrived, and that did not fail
  // authentication: a secure handshake Fast DDS 2.9.1 lost (a new participant heals it).
  // Default: none.
  virtual std::vector<std::string> unreached_agents(std::chrono::milliseconds min_age) const;
  // Makes sending to `partition` ready ahead of the first send: on DDS, creates its Command
  // writer now, so that matching it with the hosts' readers (secured: a crypto token exchange
  // each) happens in the background rather than in the first send. Default: nothing.
  virtual void prepare(const std::string& partition);
};

struct ManagerCallbacks {
  // Every callback runs on a transport thread and none may block long. on_reply may run on the
  // thread receiving from the network, concurrently with the others (and with itself, for
  // replies of different kinds); the rest run one at a time per link.
  std::function<void(const HostView&)> on_host;  // new or updated host
  // The host left: cleanly (its agent disposed it) or not (its liveliness was lost).
  std::function<void(const std::string& host_id, bool clean)> on_host_gone;
  std::function<void(const VmView&)> on_vm;
  // A VM left the view: `undefined` when its host said so (the VM was undefined), false when its
  // host stopped publishing it. A transport reports a clean leave of the host (on_host_gone
  // with clean = true) before it stops publishing the host's VMs, so that a VM gone while its
  // host is still in the view was lost with its host (its writer gone, the host not yet seen so).
  std::function<void(const std::string& host_id, const std::string& uuid, bool undefined)> on_vm_gone;
  std::function<void(const CommandReply&)> on_reply;
  std::function<void(const HostSample&)> on_sample;  // one monitoring tick of a host
  std::function<void(const HostImages&)> on_images;  // a host's cached base images
  std::function<void(const ImageChunk&)> on_chunk;   // a piece of an image a host sends
};

// One participant in the data space. Thread-safe. Links must be destroyed before it.
class CLOUDMGR_API Transport {
 public:
  Transport() = default;
  virtual ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  virtual Result<std::unique_ptr<AgentLink>> open_agent(const std::string& host_id,
                                                        const std::vector<std::string>& groups,
                                                        AgentCallbacks callbacks) = 0;
  // Already published state (host and VM records) arrives through the callbacks at once.
  virtual Result<std::unique_ptr<ManagerLink>> open_manager(const std::string& name, ManagerCallbacks callbacks) = 0;
};

using TransportFactory = std::function<Result<std::unique_ptr<Transport>>(const TransportConfig&)>;

// Registers a transport kind; kAlreadyExists if taken. Thread-safe.
CLOUDMGR_API Status register_transport(std::string kind, TransportFactory factory);
// Opens config.kind ("dds" and "inproc" are built in). kInvalidArgument for an unknown
// kind or a bad config (domain id > 232, no interface, malformed address).
CLOUDMGR_API Result<std::unique_ptr<Transport>> open_transport(const TransportConfig& config);

}  // namespace cloudmgr::spi
