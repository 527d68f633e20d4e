// An in-process transport: every Transport opened with the same domain id in one process
// shares one in-memory data space. It keeps the semantics the core relies on from DDS:
// durable host and VM state (a late manager sees it at once), commands delivered only to
// the agents subscribed to the target partition, asynchronous in-order delivery on one
// thread, and a link dropped without leave() looks like a dead agent.
#include "transport/inproc/inproc_factory.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace cloudmgr::inproc {
namespace {

// Runs jobs in order on one thread.
class Dispatcher {
 public:
  Dispatcher() : thread_([this] { run(); }) {}
  ~Dispatcher() {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void post(std::function<void()> job) {
    {
      const std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_all();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) {
          return;  // stopping, queue drained
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // GUARDED_BY(mutex_)
  bool stop_ = false;                       // GUARDED_BY(mutex_)
  std::thread thread_;
};

// A link's callbacks, shared with queued jobs. Jobs deliver under `mutex` only while the
// link is alive; the link's destructor takes the mutex, so it returns only after a running
// callback has finished.
template <typename Callbacks>
struct Endpoint {
  std::mutex mutex;
  bool alive = true;
  Callbacks callbacks;
};

using AgentEndpoint = Endpoint<spi::AgentCallbacks>;
using ManagerEndpoint = Endpoint<spi::ManagerCallbacks>;

struct AgentEntry {
  std::string host_id;
  std::set<std::string> partitions;
  std::shared_ptr<AgentEndpoint> endpoint;
};

class Bus {
 public:
  std::mutex mutex;
  std::map<std::string, HostView> hosts;                             // GUARDED_BY(mutex)
  std::map<std::pair<std::string, std::string>, VmView> vms;         // GUARDED_BY(mutex)
  std::map<std::string, HostSample> samples;                         // GUARDED_BY(mutex): latest per host
  std::map<std::string, HostImages> images;                          // GUARDED_BY(mutex): per host
  std::map<const void*, AgentEntry> agents;                          // GUARDED_BY(mutex)
  std::map<const void*, std::shared_ptr<ManagerEndpoint>> managers;  // GUARDED_BY(mutex)
  // Image pieces queued and not yet delivered: senders wait while there are too many, as a
  // DDS writer with a bounded keep-all history waits for its readers.
  std::mutex chunk_mutex;
  std::condition_variable chunk_cv;
  std::size_t chunk_bytes_queued = 0;  // GUARDED_BY(chunk_mutex)
  static constexpr std::size_t kMaxChunkBytesQueued = 8U << 20U;
  Dispatcher dispatcher;  // destroyed first: drains jobs while the maps still exist

  // Waits until the piece may be queued; false at the deadline.
  bool reserve_chunk(std::size_t bytes, std::int64_t deadline_ns) {
    std::unique_lock lock(chunk_mutex);
    while (chunk_bytes_queued > 0 && chunk_bytes_queued + bytes > kMaxChunkBytesQueued) {
      const std::int64_t left = deadline_ns - now_ns();
      if (left <= 0) {
        return false;
      }
      chunk_cv.wait_for(lock, std::chrono::nanoseconds(std::min<std::int64_t>(left, 100'000'000)));
    }
    chunk_bytes_queued += bytes;
    return true;
  }
  void release_chunk(std::size_t bytes) {
    {
      const std::lock_guard lock(chunk_mutex);
      chunk_bytes_queued -= bytes;
    }
    chunk_cv.notify_all();
  }

  // Queues `fn(callbacks)` for every manager. Call with `mutex` held.
  template <typename Fn>
  void to_managers(Fn fn) {
    for (auto& entry : managers) {
      const auto ep = entry.second;
      dispatcher.post([ep, fn] {
        const std::lock_guard lock(ep->mutex);
        if (ep->alive) {
          fn(ep->callbacks);
        }
      });
    }
  }
};

std::mutex g_buses_mutex;
std::map<std::uint32_t, std::weak_ptr<Bus>> g_buses;  // GUARDED_BY(g_buses_mutex)

std::shared_ptr<Bus> bus_for(std::uint32_t domain) {
  const std::lock_guard lock(g_buses_mutex);
  auto bus = g_buses[domain].lock();
  if (!bus) {
    bus = std::make_shared<Bus>();
    g_buses[domain] = bus;
  }
  return bus;
}

std::set<std::string> partitions_for(const std::string& host_id, const std::vector<std::string>& groups) {
  std::set<std::string> p{"all", "host." + host_id};
  for (const auto& g : groups) {
    p.insert("group." + g);
  }
  return p;
}

class InprocAgentLink final : public spi::AgentLink {
 public:
  InprocAgentLink(std::shared_ptr<Bus> bus, std::string host_id, std::shared_ptr<AgentEndpoint> ep)
      : bus_(std::move(bus)), host_id_(std::move(host_id)), endpoint_(std::move(ep)) {}

  ~InprocAgentLink() override {
    {
      const std::lock_guard lock(endpoint_->mutex);
      endpoint_->alive = false;
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->agents.erase(this);
    if (!left_) {
      // Gone without leave(): managers see liveliness lost. Its state is no longer alive.
      const std::string id = host_id_;
      bus_->hosts.erase(id);
      bus_->samples.erase(id);
      bus_->images.erase(id);
      std::erase_if(bus_->vms, [&](const auto& e) { return e.first.first == id; });
      bus_->to_managers([id](const spi::ManagerCallbacks& cb) {
        if (cb.on_host_gone) {
          cb.on_host_gone(id, false);
        }
      });
    }
  }
  InprocAgentLink(const InprocAgentLink&) = delete;
  InprocAgentLink& operator=(const InprocAgentLink&) = delete;

  void attach(const std::vector<std::string>& groups) {
    const std::lock_guard lock(bus_->mutex);
    bus_->agents[this] = AgentEntry{host_id_, partitions_for(host_id_, groups), endpoint_};
  }

  Status publish_host(const HostView& host) override {
    if (host.info.id != host_id_) {
      return invalid_argument_error("publish_host: host id differs from the link's");
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->hosts[host_id_] = host;
    bus_->agents[this].partitions = partitions_for(host_id_, host.groups);
    bus_->to_managers([host](const spi::ManagerCallbacks& cb) {
      if (cb.on_host) {
        cb.on_host(host);
      }
    });
    return {};
  }

  Status publish_vm(const VmView& vm) override {
    if (vm.host_id != host_id_) {
      return invalid_argument_error("publish_vm: host id differs from the link's");
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->vms[{host_id_, vm.vm.uuid}] = vm;
    bus_->to_managers([vm](const spi::ManagerCallbacks& cb) {
      if (cb.on_vm) {
        cb.on_vm(vm);
      }
    });
    return {};
  }

  Status remove_vm(std::string_view uuid) override {
    const std::lock_guard lock(bus_->mutex);
    bus_->vms.erase({host_id_, std::string(uuid)});
    bus_->to_managers([host = host_id_, id = std::string(uuid)](const spi::ManagerCallbacks& cb) {
      if (cb.on_vm_gone) {
        cb.on_vm_gone(host, id, true);
      }
    });
    return {};
  }

  Status set_groups(const std::vector<std::string>& groups) override {
    const std::lock_guard lock(bus_->mutex);
    bus_->agents[this].partitions = partitions_for(host_id_, groups);
    return {};
  }

  Status reply(const CommandReply& reply) override {
    const std::lock_guard lock(bus_->mutex);
    bus_->to_managers([reply](const spi::ManagerCallbacks& cb) {
      if (cb.on_reply) {
        cb.on_reply(reply);
      }
    });
    return {};
  }

  Status publish_sample(const HostSample& sample) override {
    if (sample.host_id != host_id_) {
      return invalid_argument_error("publish_sample: host id differs from the link's");
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->samples[host_id_] = sample;
    bus_->to_managers([sample](const spi::ManagerCallbacks& cb) {
      if (cb.on_sample) {
        cb.on_sample(sample);
      }
    });
    return {};
  }

  Status publish_images(const HostImages& images) override {
    if (images.host_id != host_id_) {
      return invalid_argument_error("publish_images: host id differs from the link's");
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->images[host_id_] = images;
    bus_->to_managers([images](const spi::ManagerCallbacks& cb) {
      if (cb.on_images) {
        cb.on_images(images);
      }
    });
    return {};
  }

  Status send_chunk(const ImageChunk& chunk, std::int64_t deadline_ns) override {
    const std::size_t bytes = chunk.data.size();
    std::vector<std::shared_ptr<ManagerEndpoint>> targets;
    {
      const std::lock_guard lock(bus_->mutex);
      for (auto& entry : bus_->managers) {
        targets.push_back(entry.second);
      }
    }
    // Not under the bus mutex: the dispatcher may need it to drain the queue we wait on.
    for (const auto& ep : targets) {
      if (!bus_->reserve_chunk(bytes, deadline_ns)) {
        return deadline_exceeded_error("image piece: the managers did not take it in time");
      }
      bus_->dispatcher.post([bus = bus_.get(), ep, chunk, bytes] {
        {
          const std::lock_guard l(ep->mutex);
          if (ep->alive && ep->callbacks.on_chunk) {
            ep->callbacks.on_chunk(chunk);
          }
        }
        bus->release_chunk(bytes);
      });
    }
    return {};
  }

  Status leave() override {
    const std::lock_guard lock(bus_->mutex);
    left_ = true;
    const std::string id = host_id_;
    bus_->samples.erase(id);
    bus_->images.erase(id);
    // The host first (its VMs leave with it, for "host left"), then its VMs (SPI on_vm_gone).
    bus_->hosts.erase(id);
    bus_->to_managers([id](const spi::ManagerCallbacks& cb) {
      if (cb.on_host_gone) {
        cb.on_host_gone(id, true);
      }
    });
    for (auto it = bus_->vms.begin(); it != bus_->vms.end();) {
      if (it->first.first == id) {
        bus_->to_managers([id, uuid = it->first.second](const spi::ManagerCallbacks& cb) {
          if (cb.on_vm_gone) {
            cb.on_vm_gone(id, uuid, false);
          }
        });
        it = bus_->vms.erase(it);
      } else {
        ++it;
      }
    }
    return {};
  }

 private:
  std::shared_ptr<Bus> bus_;
  std::string host_id_;
  std::shared_ptr<AgentEndpoint> endpoint_;
  bool left_ = false;  // GUARDED_BY(bus_->mutex)
};

class InprocManagerLink final : public spi::ManagerLink {
 public:
  InprocManagerLink(std::shared_ptr<Bus> bus, std::shared_ptr<ManagerEndpoint> ep)
      : bus_(std::move(bus)), endpoint_(std::move(ep)) {}
  ~InprocManagerLink() override {
    {
      const std::lock_guard lock(endpoint_->mutex);
      endpoint_->alive = false;
    }
    const std::lock_guard lock(bus_->mutex);
    bus_->managers.erase(this);
  }
  InprocManagerLink(const InprocManagerLink&) = delete;
  InprocManagerLink& operator=(const InprocManagerLink&) = delete;

  // Joins the bus and replays the durable state to this manager alone.
  void attach() {
    const std::lock_guard lock(bus_->mutex);
    bus_->managers[this] = endpoint_;
    for (const auto& entry : bus_->hosts) {
      const HostView& host = entry.second;
      post([host](const spi::ManagerCallbacks& cb) {
        if (cb.on_host) {
          cb.on_host(host);
        }
      });
    }
    for (const auto& entry : bus_->vms) {
      const VmView& vm = entry.second;
      post([vm](const spi::ManagerCallbacks& cb) {
        if (cb.on_vm) {
          cb.on_vm(vm);
        }
      });
    }
    for (const auto& entry : bus_->samples) {
      const HostSample& sample = entry.second;
      post([sample](const spi::ManagerCallbacks& cb) {
        if (cb.on_sample) {
          cb.on_sample(sample);
        }
      });
    }
    for (const auto& entry : bus_->images) {
      const HostImages& images = entry.second;
      post([images](const spi::ManagerCallbacks& cb) {
        if (cb.on_images) {
          cb.on_images(images);
        }
      });
    }
  }

  Status send_chunk(const ImageChunk& chunk, const std::vector<std::string>& hosts, std::int64_t deadline_ns) override {
    const std::size_t bytes = chunk.data.size();
    std::vector<std::shared_ptr<AgentEndpoint>> targets;
    std::set<std::string> missing(hosts.begin(), hosts.end());
    {
      const std::lock_guard lock(bus_->mutex);
      for (auto& entry : bus_->agents) {
        if (missing.erase(entry.second.host_id) > 0) {
          targets.push_back(entry.second.endpoint);
        }
      }
    }
    if (!missing.empty()) {
      std::string names;
      for (const auto& h : missing) {
        names += (names.empty() ? "" : ", ") + h;
      }
      return unavailable_error("image piece: no agent of " + names + " is on the bus");
    }
    for (const auto& ep : targets) {
      if (!bus_->reserve_chunk(bytes, deadline_ns)) {
        return deadline_exceeded_error("image piece: the hosts did not take it in time");
      }
      bus_->dispatcher.post([bus = bus_.get(), ep, chunk, bytes] {
        {
          const std::lock_guard l(ep->mutex);
          if (ep->alive && ep->callbacks.on_chunk) {
            ep->callbacks.on_chunk(chunk);
          }
        }
        bus->release_chunk(bytes);
      });
    }
    return {};
  }

  Status send(const Command& command, const std::vector<std::string>& /*expected_hosts*/) override {
    const std::string partition = command.target.partition();
    const std::lock_guard lock(bus_->mutex);
    for (auto& entry : bus_->agents) {
      const AgentEntry& agent = entry.second;
      if (!agent.partitions.contains(partition)) {
        continue;
      }
      bus_->dispatcher.post([ep = agent.endpoint, command] {
        const std::lock_guard l(ep->mutex);
        if (ep->alive && ep->callbacks.on_command) {
          ep->callbacks.on_command(command);
        }
      });
    }
    return {};
  }

 private:
  template <typename Fn>
  void post(Fn fn) {
    bus_->dispatcher.post([ep = endpoint_, fn] {
      const std::lock_guard lock(ep->mutex);
      if (ep->alive) {
        fn(ep->callbacks);
      }
    });
  }

  std::shared_ptr<Bus> bus_;
  std::shared_ptr<ManagerEndpoint> endpoint_;
};

class InprocTransport final : public spi::Transport {
 public:
  explicit InprocTransport(std::shared_ptr<Bus> bus) : bus_(std::move(bus)) {}

  Result<std::unique_ptr<spi::AgentLink>> open_agent(const std::string& host_id, const std::vector<std::string>& groups,
                                                     spi::AgentCallbacks callbacks) override {
    if (Status s = validate_host_id(host_id); !s.ok()) {
      return s;
    }
    auto ep = std::make_shared<AgentEndpoint>();
    ep->callbacks = std::move(callbacks);
    auto link = std::make_unique<InprocAgentLink>(bus_, host_id, std::move(ep));
    link->attach(groups);
    return std::unique_ptr<spi::AgentLink>(std::move(link));
  }

  Result<std::unique_ptr<spi::ManagerLink>> open_manager(const std::string& /*name*/,
                                                         spi::ManagerCallbacks callbacks) override {
    auto ep = std::make_shared<ManagerEndpoint>();
    ep->callbacks = std::move(callbacks);
    auto link = std::make_unique<InprocManagerLink>(bus_, std::move(ep));
    link->attach();
    return std::unique_ptr<spi::ManagerLink>(std::move(link));
  }

 private:
  std::shared_ptr<Bus> bus_;
};

}  // namespace

Result<std::unique_ptr<spi::Transport>> open_inproc_transport(const spi::TransportConfig& config) {
  return std::unique_ptr<spi::Transport>(new InprocTransport(bus_for(config.domain_id)));
}

}  // namespace cloudmgr::inproc
