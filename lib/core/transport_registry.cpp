// The transport registry: registered kinds first, then the built-in "dds" and "inproc".
#include <arpa/inet.h>

#include <map>
#include <mutex>

#include <fmt/format.h>

#include "cloudmgr/spi/transport.h"
#include "transport/dds/dds_factory.h"
#include "transport/inproc/inproc_factory.h"
#include "transport/tcp/tcp_factory.h"

namespace cloudmgr::spi {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, TransportFactory, std::less<>> factories;  // GUARDED_BY(mutex)
};

Registry& registry() {
  static Registry instance;
  return instance;
}

bool is_ipv4(const std::string& text) {
  in_addr addr{};
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

Status validate(const TransportConfig& c) {
  if (c.domain_id > 232) {
    return invalid_argument_error(fmt::format("DDS domain id {} is out of range (0-232)", c.domain_id));
  }
  if (c.interfaces.empty()) {
    return invalid_argument_error("the transport needs at least one interface address (e.g. 127.0.0.1)");
  }
  for (const auto& i : c.interfaces) {
    if (!is_ipv4(i)) {
      return invalid_argument_error(fmt::format("interface '{}' is not an IPv4 address", i));
    }
  }
  for (const auto& p : c.initial_peers) {
    if (!is_ipv4(p)) {
      return invalid_argument_error(fmt::format("initial peer '{}' is not an IPv4 address", p));
    }
  }
  if (c.discovery == TransportConfig::Discovery::kStar && c.initial_peers.empty()) {
    return invalid_argument_error("the star discovery profile needs the managers' addresses as initial peers");
  }
  if (c.agent_lease_ms < 1000 || c.announce_period_ms == 0 || c.announce_period_ms * 2 > c.agent_lease_ms) {
    return invalid_argument_error(
        fmt::format("agent lease {} ms / announce period {} ms: the lease must be at least 1000 ms and at least "
                    "twice the announce period",
                    c.agent_lease_ms, c.announce_period_ms));
  }
  return {};
}

}  // namespace

AgentLink::~AgentLink() = default;
Status AgentLink::publish_sample(const HostSample& /*sample*/) {
  return unimplemented_error("this transport does not carry monitoring samples");
}
Status AgentLink::publish_images(const HostImages& /*images*/) {
  return unimplemented_error("this transport does not carry image lists");
}
Status AgentLink::send_chunk(const ImageChunk& /*chunk*/, std::int64_t /*deadline_ns*/) {
  return unimplemented_error("this transport does not carry images");
}
ManagerLink::~ManagerLink() = default;
Status ManagerLink::send_chunk(const ImageChunk& /*chunk*/, const std::vector<std::string>& /*hosts*/,
                               std::int64_t /*deadline_ns*/) {
  return unimplemented_error("this transport does not carry images");
}
std::vector<std::string> AgentLink::unreached_managers(std::chrono::milliseconds /*min_age*/) const { return {}; }
std::vector<std::string> ManagerLink::unreached_agents(std::chrono::milliseconds /*min_age*/) const { return {}; }
void ManagerLink::prepare(const std::string& /*partition*/) {}
std::optional<Status> ManagerLink::send_if_ready(const Command& /*command*/,
                                                 const std::vector<std::string>& /*expected_hosts*/) {
  return std::nullopt;
}
Transport::~Transport() = default;

Status register_transport(std::string kind, TransportFactory factory) {
  if (kind.empty() || !factory) {
    return invalid_argument_error("a transport registration needs a kind and a factory");
  }
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  if (!r.factories.emplace(std::move(kind), std::move(factory)).second) {
    return already_exists_error("transport kind is already registered");
  }
  return {};
}

Result<std::unique_ptr<Transport>> open_transport(const TransportConfig& config) {
  if (Status s = validate(config); !s.ok()) {
    return s;
  }
  TransportFactory factory;
  {
    Registry& r = registry();
    const std::lock_guard lock(r.mutex);
    if (auto it = r.factories.find(config.kind); it != r.factories.end()) {
      factory = it->second;
    }
  }
  if (factory) {
    return factory(config);
  }
  if (config.kind == "dds") {
    return dds::open_dds_transport(config);
  }
  if (config.kind == "tcp") {
    return tcp::open_tcp_transport(config);
  }
  if (config.kind == "inproc") {
    return inproc::open_inproc_transport(config);
  }
  return invalid_argument_error(fmt::format("unknown transport '{}'; use \"dds\", \"tcp\" or \"inproc\"", config.kind));
}

}  // namespace cloudmgr::spi
