// DDS-Security end to end, with real Fast DDS security: cloudmgr-agent processes secured by a
// PKI the test makes (cloudmgr/pki.h), managers in this process, and attackers: unsecured
// participants, participants with the wrong identity, forged or expired permissions, another
// CA, and a bare Fast DDS program (what an attacker would write) with an agent's own files.
// Every test asserts a count. Each uses its own DDS domain (180-188 and 191; the marker test also 186).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fastdds/rtps/transport/UDPv4TransportDescriptor.h>
#include <fastdds/rtps/transport/shared_mem/SharedMemTransportDescriptor.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fastdds/dds/domain/DomainParticipant.hpp>
#include <fastdds/dds/domain/DomainParticipantFactory.hpp>
#include <fastdds/dds/publisher/DataWriter.hpp>
#include <fastdds/dds/publisher/Publisher.hpp>
#include <fastdds/dds/publisher/qos/DataWriterQos.hpp>
#include <fastdds/dds/topic/Topic.hpp>
#include <fastdds/dds/topic/TypeSupport.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/cloudmgr.h"
#include "cloudmgrPubSubTypes.h"  // generated from idl/cloudmgr.idl
#include "core/bus_names.h"
#include "pki/pki_internal.h"
#include "support/agent_process.h"
#include "support/raw_manager.h"
#include "support/text.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
namespace fdds = eprosima::fastdds::dds;
using std::chrono::milliseconds;

// Fast DDS 2.9.1 leaks its identity handle and OpenSSL objects when it refuses a secured
// participant (seen under LeakSanitizer; the OpenSSL frames cannot be named in a suppression
// with fast unwinding). Under ASan the checks that make Fast DDS refuse one are left to the
// plain build, which runs them too.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRefusedParticipantsLeak = true;
#else
constexpr bool kRefusedParticipantsLeak = false;
#endif

std::uint32_t domain_for_this_test() {
  static const std::map<std::string, std::uint32_t> kDomains = {
      {"UnsecuredParticipantGetsNothingAndCommandsNothing", 180},
      {"AgentIdentityCannotWriteCommands", 181},
      {"SelfSignedPermissionsAreRejected", 182},
      {"HostStatusClaimingAnotherHostIsIgnored", 183},
      {"ExpiredPermissionsAndForeignCaAreRejected", 184},
      {"MarkerNeverAppearsOnTheWire", 185},
      {"AuditNamesTheRealIssuer", 187},
      {"SecuredCloudRunsCommandsMonitoringAndHistory", 188},
      {"AgentRenewsItsParticipantForAManagerItNeverReaches", 191},
  };
  const auto it = kDomains.find(::testing::UnitTest::GetInstance()->current_test_info()->name());
  return it != kDomains.end() ? it->second : 189;
}

using testing::lines_with;
using testing::occurrences;
using testing::slurp;

// The files of one identity, as a DDS participant's security properties take them.
struct Files {
  std::string identity_ca, cert, key, permissions_ca, governance, permissions;
};

Files files_of(const std::string& pki_dir, const std::string& identity) {
  const std::string id = pki_dir + "/identities/" + identity;
  return {pki_dir + "/identity_ca.pem", id + "/cert.pem",       id + "/key.pem", pki_dir + "/permissions_ca.pem",
          pki_dir + "/governance.p7s",  id + "/permissions.p7s"};
}

// A bare Fast DDS participant with the given security files and the project's loopback
// transports: what an attacker's own program, holding these files, would do.
class RawParticipant {
 public:
  RawParticipant(std::uint32_t domain, const Files& f) {
    fdds::DomainParticipantQos q = fdds::PARTICIPANT_QOS_DEFAULT;
    q.transport().use_builtin_transports = false;
    auto udp = std::make_shared<eprosima::fastdds::rtps::UDPv4TransportDescriptor>();
    udp->interfaceWhiteList = {"127.0.0.1"};
    q.transport().user_transports.push_back(udp);
    q.transport().user_transports.push_back(std::make_shared<eprosima::fastdds::rtps::SharedMemTransportDescriptor>());
    auto& p = q.properties().properties();
    const auto file = [](const std::string& path) { return "file://" + path; };
    p.emplace_back("dds.sec.auth.plugin", "builtin.PKI-DH");
    p.emplace_back("dds.sec.auth.builtin.PKI-DH.identity_ca", file(f.identity_ca));
    p.emplace_back("dds.sec.auth.builtin.PKI-DH.identity_certificate", file(f.cert));
    p.emplace_back("dds.sec.auth.builtin.PKI-DH.private_key", file(f.key));
    p.emplace_back("dds.sec.access.plugin", "builtin.Access-Permissions");
    p.emplace_back("dds.sec.access.builtin.Access-Permissions.permissions_ca", file(f.permissions_ca));
    p.emplace_back("dds.sec.access.builtin.Access-Permissions.governance", file(f.governance));
    p.emplace_back("dds.sec.access.builtin.Access-Permissions.permissions", file(f.permissions));
    p.emplace_back("dds.sec.crypto.plugin", "builtin.AES-GCM-GMAC");
    participant_ = fdds::DomainParticipantFactory::get_instance()->create_participant(domain, q);
  }
  ~RawParticipant() {
    if (participant_ != nullptr) {
      (void)participant_->delete_contained_entities();
      (void)fdds::DomainParticipantFactory::get_instance()->delete_participant(participant_);
    }
  }
  RawParticipant(const RawParticipant&) = delete;
  RawParticipant& operator=(const RawParticipant&) = delete;

  bool created() const { return participant_ != nullptr; }

  // A reliable writer of `topic` in `partition`; nullptr when DDS-Security refuses it.
  template <typename PubSubType>
  fdds::DataWriter* writer(const char* topic_name, const std::string& partition, bool transient_local) {
    fdds::TypeSupport type(new PubSubType());
    (void)type.register_type(participant_);
    fdds::Topic* topic = participant_->create_topic(topic_name, type.get_type_name(), fdds::TOPIC_QOS_DEFAULT);
    if (topic == nullptr) {
      fdds::TopicDescription* d = participant_->lookup_topicdescription(topic_name);
      topic = dynamic_cast<fdds::Topic*>(d);
    }
    fdds::PublisherQos pq = fdds::PUBLISHER_QOS_DEFAULT;
    pq.partition().push_back(partition.c_str());
    fdds::Publisher* pub = participant_->create_publisher(pq);
    if (topic == nullptr || pub == nullptr) {
      return nullptr;
    }
    fdds::DataWriterQos wq = fdds::DATAWRITER_QOS_DEFAULT;
    wq.reliability().kind = fdds::RELIABLE_RELIABILITY_QOS;
    wq.durability().kind = transient_local ? fdds::TRANSIENT_LOCAL_DURABILITY_QOS : fdds::VOLATILE_DURABILITY_QOS;
    wq.data_sharing().off();
    return pub->create_datawriter(topic, wq);
  }

 private:
  fdds::DomainParticipant* participant_ = nullptr;
};

wire::Command wire_command(const std::string& id, const std::string& target, const std::string& verb,
                           const Arguments& args) {
  wire::Command c;
  c.command_id(id);
  c.issuer("attacker");
  c.target(target);
  c.verb(verb);
  for (const auto& [k, v] : args) {
    wire::Argument a;
    a.name(k);
    a.value(v);
    c.arguments().push_back(a);
  }
  c.issued_ns(now_ns());
  c.deadline_ns(now_ns() + 60'000'000'000LL);
  return c;
}

class Security : public ::testing::Test {
 protected:
  void SetUp() override {
    domain_ = domain_for_this_test();
    ASSERT_NE(domain_, 189U) << "give this test its own domain id in domain_for_this_test()";
    root_ = fs::temp_directory_path() / ("cloudmgr-sec-" + std::to_string(getpid()) + "-" + std::to_string(domain_));
    fs::remove_all(root_);
    pki_ = (root_ / "pki").string();
    ASSERT_TRUE(pki::init({.dir = pki_}).ok());
    issue(pki::Role::kManager, "admin");
  }
  void TearDown() override {
    managers_.clear();
    agents_.clear();
    if (HasFailure()) {
      for (const auto& entry : fs::recursive_directory_iterator(root_)) {
        if (entry.path().filename() == "agent.log") {
          std::cerr << "---- " << entry.path() << "\n" << slurp(entry.path()) << "\n";
        }
      }
    }
    fs::remove_all(root_);
  }

  void issue(pki::Role role, const std::string& name, const std::string& dir = "") {
    auto r = pki::issue({.dir = dir.empty() ? pki_ : dir, .role = role, .name = name});
    ASSERT_TRUE(r.ok()) << r.status();
  }

  spi::TransportConfig transport(const std::string& pki_dir, const std::string& identity) const {
    spi::TransportConfig t;
    t.domain_id = domain_;
    t.agent_lease_ms = 4000;
    t.announce_period_ms = 1000;
    t.pki_dir = pki_dir;
    t.identity = identity;
    return t;
  }

  // A secured agent process for `id` (its identity issued first).
  void start_agent(const std::string& id, const std::vector<std::string>& groups = {}) {
    issue(pki::Role::kAgent, id);
    agents_[id] = std::make_unique<testing::AgentProcess>(id, domain_, root_ / id, groups, 4000,
                                                          std::vector<std::string>{"--pki", pki_});
  }

  Manager& manager() {
    if (managers_.empty()) {
      auto m = Manager::open({.transport = transport(pki_, ""), .name = "admin"});
      EXPECT_TRUE(m.ok()) << m.status();
      managers_.push_back(std::move(*m));
    }
    return *managers_.front();
  }

  // The audit entries of a host's agent for one command id (read from its state directory).
  std::size_t audited(const std::string& host, const std::string& command_id) const {
    auto entries = read_audit_log((root_ / host / "audit.jsonl").string(), 0, 0);
    if (!entries.ok()) {
      return 0;
    }
    return static_cast<std::size_t>(std::count_if(entries->begin(), entries->end(),
                                                  [&](const AuditEntry& e) { return e.command_id == command_id; }));
  }

  // Sends one command from the real manager and waits for it: proves the path works.
  void legit_command_reaches(const std::string& host) {
    auto r = manager().execute(Target::host(host), "host.info", {});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->all_ok()) << r->hosts.at(0).status;
    EXPECT_EQ(audited(host, r->command_id), 1U);
  }

  std::uint32_t domain_ = 0;
  fs::path root_;
  std::string pki_;
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents_;
  std::vector<std::unique_ptr<Manager>> managers_;
};

TEST_F(Security, UnsecuredParticipantGetsNothingAndCommandsNothing) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.sample("node1").has_value(); }, milliseconds(10000)).ok());

  auto plain = Manager::open({.transport = transport("", ""), .name = "intruder"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto raw = testing::RawManager::open(transport("", ""));
  ASSERT_TRUE(raw.ok()) << raw.status();
  const Command c{.id = random_uuid(),
                  .issuer = "intruder",
                  .target = Target::all(),
                  .verb = "vm.destroy",
                  .arguments = {{"vm", "db1"}},
                  .issued_ns = now_ns(),
                  .deadline_ns = now_ns() + 60'000'000'000LL};
  ASSERT_TRUE((*raw)->send(c, {}).ok());  // written at once: nobody to wait for
  // Several announcement periods and samples later:
  std::this_thread::sleep_for(milliseconds(5000));
  EXPECT_EQ(audited("node1", c.id), 0U);
  EXPECT_FALSE((*raw)->wait_replies(1, milliseconds(10)));
  EXPECT_EQ((*plain)->hosts().size(), 0U);
  EXPECT_EQ((*plain)->vms().size(), 0U);
  EXPECT_EQ((*plain)->samples().size(), 0U);
  legit_command_reaches("node1");
}

TEST_F(Security, AgentIdentityCannotWriteCommands) {
  start_agent("node1");
  issue(pki::Role::kAgent, "node2");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());

  // The library refuses a manager link under an agent identity...
  auto t = spi::open_transport(transport(pki_, "agent.node2"));
  ASSERT_TRUE(t.ok()) << t.status();
  auto link = (*t)->open_manager("node2", {});
  EXPECT_EQ(link.status().code(), StatusCode::kPermissionDenied) << link.status();
  // ...and DDS-Security refuses a bare program with the agent's files a Command writer in
  // every partition it tries.
  RawParticipant rogue(domain_, files_of(pki_, "agent.node2"));
  ASSERT_TRUE(rogue.created());
  int writers = 0;
  for (const std::string partition : {"all", "host.node1", "host.node2", "group.web"}) {
    writers += rogue.writer<wire::CommandPubSubType>(bus::kCommandTopic, partition, false) != nullptr ? 1 : 0;
  }
  EXPECT_EQ(writers, 0);
  legit_command_reaches("node1");
}

TEST_F(Security, SelfSignedPermissionsAreRejected) {
  start_agent("node1");
  issue(pki::Role::kAgent, "rogue");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());
  // The rogue agent grants itself a manager's rights and signs that with its own identity key.
  const fs::path id = root_ / "pki/identities/agent.rogue";
  std::string doc = pki::permissions_document(pki::Role::kManager, "rogue", now_ns() / 1'000'000'000 - 3600,
                                              now_ns() / 1'000'000'000 + 86400);
  const std::string as_manager = pki::subject_for(pki::Role::kManager, "rogue");
  doc.replace(doc.find(as_manager), as_manager.size(), pki::subject_for(pki::Role::kAgent, "rogue"));
  auto forged = pki::sign_document(doc, (id / "cert.pem").string(), (id / "key.pem").string());
  ASSERT_TRUE(forged.ok()) << forged.status();
  std::ofstream(id / "permissions.p7s", std::ios::trunc) << *forged;

  // Our own check names it before any participant exists.
  auto t = spi::open_transport(transport(pki_, "agent.rogue"));
  EXPECT_EQ(t.status().code(), StatusCode::kFailedPrecondition) << t.status();
  EXPECT_NE(t.status().message().find("not signed by the permissions CA"), std::string::npos) << t.status();
  // A bare program goes ahead anyway: whatever it manages to create, the agent executes none
  // of its commands.
  if (kRefusedParticipantsLeak) {
    std::printf("ASan build: the bare program's attempt is left to the plain build (Fast DDS leaks when it refuses)\n");
    legit_command_reaches("node1");
    return;
  }
  RawParticipant rogue(domain_, files_of(pki_, "agent.rogue"));
  std::printf("rogue participant with self-signed permissions: %s\n",
              rogue.created() ? "created locally" : "refused locally");
  const std::string cid = random_uuid();
  if (rogue.created()) {
    fdds::DataWriter* w = rogue.writer<wire::CommandPubSubType>(bus::kCommandTopic, "all", false);
    if (w != nullptr) {
      wire::Command c = wire_command(cid, "all", "vm.destroy", {{"vm", "db1"}});
      for (int i = 0; i < 10; ++i) {
        (void)w->write(&c);
        std::this_thread::sleep_for(milliseconds(300));
      }
    }
  }
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(audited("node1", cid), 0U);
  legit_command_reaches("node1");
}

TEST_F(Security, HostStatusClaimingAnotherHostIsIgnored) {
  issue(pki::Role::kAgent, "node1");
  issue(pki::Role::kAgent, "node2");
  // node1's own files in a bare program: permissions confine its writers to host.node1...
  RawParticipant a(domain_, files_of(pki_, "agent.node1"));
  ASSERT_TRUE(a.created());
  EXPECT_EQ(a.writer<wire::HostStatusPubSubType>(bus::kHostTopic, "host.node2", true), nullptr);
  fdds::DataWriter* w = a.writer<wire::HostStatusPubSubType>(bus::kHostTopic, "host.node1", true);
  ASSERT_NE(w, nullptr);
  // ...and inside its own partition it claims to be node2, then says who it is.
  wire::HostStatus lie;
  lie.host_id("node2");
  lie.memory_bytes(1ULL << 30);
  lie.updated_ns(now_ns());
  ASSERT_TRUE(w->write(&lie));
  wire::HostStatus truth = lie;
  truth.host_id("node1");
  Manager& m = manager();
  ASSERT_TRUE(w->write(&truth));
  // The manager sees node1 (the path works), and never node2.
  ASSERT_TRUE(m.wait_until([](const Manager& mm) { return mm.host("node1").has_value(); }, milliseconds(20000)).ok());
  for (int i = 0; i < 5; ++i) {
    lie.updated_ns(now_ns());
    (void)w->write(&lie);
    std::this_thread::sleep_for(milliseconds(500));
  }
  EXPECT_EQ(m.hosts().size(), 1U);
  EXPECT_FALSE(m.host("node2").has_value());
}

TEST_F(Security, ExpiredPermissionsAndForeignCaAreRejected) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());

  // Expired permissions (the certificate is still valid): re-signed by the real permissions CA.
  issue(pki::Role::kAgent, "node3");
  const std::int64_t now_s = now_ns() / 1'000'000'000;
  auto expired =
      pki::sign_document(pki::permissions_document(pki::Role::kAgent, "node3", now_s - 864000, now_s - 86400),
                         pki_ + "/permissions_ca.pem", pki_ + "/private/permissions_ca.key");
  ASSERT_TRUE(expired.ok()) << expired.status();
  std::ofstream(root_ / "pki/identities/agent.node3/permissions.p7s", std::ios::trunc) << *expired;
  testing::AgentProcess node3("node3", domain_, root_ / "node3", {}, 4000, {"--pki", pki_});
  int status = 0;
  for (int i = 0; i < 100 && !node3.exited(&status); ++i) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_NE(status, 0);
  const std::string log = slurp(root_ / "node3" / "agent.log");
  EXPECT_NE(log.find("permissions.p7s': the permissions expired"), std::string::npos) << log;
  if (!kRefusedParticipantsLeak) {
    RawParticipant stale(domain_, files_of(pki_, "agent.node3"));
    EXPECT_FALSE(stale.created()) << "Fast DDS itself refuses expired permissions";
  }

  // Another CA: a complete, self-consistent PKI of its own, with a manager named admin too.
  const std::string other = (root_ / "other-pki").string();
  ASSERT_TRUE(pki::init({.dir = other}).ok());
  issue(pki::Role::kManager, "admin", other);
  issue(pki::Role::kAgent, "node9", other);
  auto raw = testing::RawManager::open(transport(other, "manager.admin"));
  ASSERT_TRUE(raw.ok()) << raw.status();
  const Command c{.id = random_uuid(),
                  .issuer = "admin",
                  .target = Target::all(),
                  .verb = "vm.destroy",
                  .arguments = {{"vm", "db1"}},
                  .issued_ns = now_ns(),
                  .deadline_ns = now_ns() + 60'000'000'000LL};
  ASSERT_TRUE((*raw)->send(c, {}).ok());
  testing::AgentProcess node9("node9", domain_, root_ / "node9", {}, 4000, {"--pki", other});
  auto foreign_view = Manager::open({.transport = transport(other, "manager.admin"), .name = "admin"});
  ASSERT_TRUE(foreign_view.ok());
  ASSERT_TRUE((*foreign_view)->wait_for_hosts(1, milliseconds(20000)).ok()) << "the other PKI works by itself";
  std::this_thread::sleep_for(milliseconds(3000));
  EXPECT_EQ(audited("node1", c.id), 0U);
  EXPECT_FALSE((*raw)->wait_replies(1, milliseconds(10)));
  EXPECT_EQ(manager().hosts().size(), 1U);
  EXPECT_FALSE(manager().host("node9").has_value());
  EXPECT_FALSE(manager().host("node3").has_value());
  EXPECT_FALSE((*foreign_view)->host("node1").has_value());
  legit_command_reaches("node1");
}

// Counts `marker` in every packet on the loopback interface while it runs (a raw socket), and
// in the shared-memory segments Fast DDS leaves in /dev/shm.
class WireCapture {
 public:
  WireCapture() {
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) {
      error_ = std::string("socket(AF_PACKET): ") + std::strerror(errno);  // NOLINT(concurrency-mt-unsafe)
      return;
    }
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
    timeval tv{.tv_sec = 0, .tv_usec = 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      error_ = std::string("bind(lo): ") + std::strerror(errno);  // NOLINT(concurrency-mt-unsafe)
      return;
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~WireCapture() {
    stop();
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  WireCapture(const WireCapture&) = delete;
  WireCapture& operator=(const WireCapture&) = delete;

  const std::string& error() const { return error_; }
  // Counts `marker` from now on (hits() starts again from 0).
  void watch(std::string marker) {
    const std::lock_guard lock(mutex_);
    marker_ = std::move(marker);
    hits_ = 0;
  }
  void stop() {
    done_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  std::size_t packets() const { return packets_; }
  std::size_t bytes() const { return bytes_; }
  std::size_t hits() const { return hits_; }

 private:
  void loop() {
    std::vector<char> buf(1 << 16);
    while (!done_) {
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) {
        continue;
      }
      ++packets_;
      bytes_ += static_cast<std::size_t>(n);
      const std::lock_guard lock(mutex_);
      if (!marker_.empty()) {
        hits_ += occurrences(std::string_view(buf.data(), static_cast<std::size_t>(n)), marker_);
      }
    }
  }

  int fd_ = -1;
  std::string error_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<std::size_t> packets_{0};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::size_t> hits_{0};
  std::mutex mutex_;
  std::string marker_;  // GUARDED_BY(mutex_)
};

std::size_t shm_hits(const std::string& marker) {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev/shm", ec)) {
    if (e.path().filename().string().starts_with("fastrtps_") && e.is_regular_file(ec)) {
      n += occurrences(slurp(e.path()), marker);
    }
  }
  return n;
}

TEST_F(Security, MarkerNeverAppearsOnTheWire) {
  WireCapture capture;
  if (!capture.error().empty()) {
    GTEST_SKIP() << "cannot capture on lo: " << capture.error() << " (needs CAP_NET_RAW)";
  }
  // Sends two commands whose arguments (and so the error replies) carry `marker` to `host`
  // through two managers: one with shared memory (between processes Fast DDS then carries data
  // in /dev/shm) and one without (everything on lo). Returns the marker's count in /dev/shm.
  const auto send_marker = [&](const spi::TransportConfig& base, const std::string& host,
                               const std::string& marker) -> std::size_t {
    capture.watch(marker);
    std::size_t in_shm = 0;
    for (const bool shm : {true, false}) {
      spi::TransportConfig t = base;
      t.shared_memory = shm;
      auto m = Manager::open({.transport = t, .name = "admin", .samples = false});
      EXPECT_TRUE(m.ok()) << m.status();
      if (!m.ok()) {
        return in_shm;
      }
      EXPECT_TRUE((*m)->wait_for_hosts(1, milliseconds(20000)).ok());
      for (const char* verb : {"vm.show", "snapshot.list"}) {
        auto r = (*m)->execute(Target::host(host), verb, {{"vm", marker}});
        EXPECT_TRUE(r.ok()) << r.status();
        if (r.ok()) {
          EXPECT_EQ(r->hosts.at(0).status.code(), StatusCode::kNotFound) << r->hosts.at(0).status;
          EXPECT_NE(r->hosts.at(0).status.message().find(marker), std::string::npos) << "the reply carries it too";
        }
        // At once, while the processes (and their segments) live and before later messages
        // reuse the buffers.
        in_shm += shm_hits(marker);
      }
    }
    return in_shm;
  };

  // First without security: the capture is shown to see commands and replies at all.
  const std::string plain_marker = "CLOUDMGR-PLAIN-" + random_uuid();
  std::size_t plain_lo = 0;
  std::size_t plain_shm = 0;
  {
    testing::AgentProcess plain("plain1", domain_ + 1, root_ / "plain1", {}, 4000);
    spi::TransportConfig t = transport("", "");
    t.domain_id = domain_ + 1;
    plain_shm = send_marker(t, "plain1", plain_marker);
    plain_lo = capture.hits();
  }
  EXPECT_GT(plain_lo, 0U) << "the unsecured command should be visible on lo";
  EXPECT_GT(plain_shm, 0U) << "the unsecured command should be visible in /dev/shm";

  const std::string marker = "CLOUDMGR-SECRET-" + random_uuid();
  start_agent("node1");
  const std::size_t before = capture.packets();
  const std::size_t secured_shm = send_marker(transport(pki_, ""), "node1", marker);
  capture.stop();
  const std::size_t secured_packets = capture.packets() - before;
  std::printf(
      "capture: unsecured marker seen %zu times on lo, %zu in /dev/shm; secured: %zu packets on lo, marker "
      "%zu times on lo, %zu in /dev/shm\n",
      plain_lo, plain_shm, secured_packets, capture.hits(), secured_shm);
  EXPECT_GT(secured_packets, 100U);
  EXPECT_EQ(capture.hits(), 0U);
  EXPECT_EQ(secured_shm, 0U);
}

TEST_F(Security, AuditNamesTheRealIssuer) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());
  auto raw = testing::RawManager::open(transport(pki_, "manager.admin"));
  ASSERT_TRUE(raw.ok()) << raw.status();
  const Command c{.id = random_uuid(),
                  .issuer = "root",  // a lie
                  .target = Target::host("node1"),
                  .verb = "host.info",
                  .arguments = {},
                  .issued_ns = now_ns(),
                  .deadline_ns = now_ns() + 60'000'000'000LL};
  ASSERT_TRUE((*raw)->send(c, {"node1"}).ok());
  ASSERT_TRUE((*raw)->wait_replies(1));
  EXPECT_TRUE((*raw)->reply(0).status.ok()) << (*raw)->reply(0).status;

  // Through the bus, as cloudctl audit reads it.
  auto r = manager().execute(Target::host("node1"), "host.audit", {});
  ASSERT_TRUE(r.ok() && r->all_ok()) << r.status();
  const auto& entries = r->hosts.at(0).reply.audit;
  auto it = std::find_if(entries.begin(), entries.end(), [&](const AuditEntry& e) { return e.command_id == c.id; });
  ASSERT_NE(it, entries.end());
  EXPECT_EQ(it->issuer, "CN=admin, OU=manager, O=cloudmgr");
  EXPECT_EQ(it->claimed_issuer, "root");
  EXPECT_EQ(it->verb, "host.info");
  EXPECT_TRUE(it->result.ok());
  EXPECT_NE(it->completed_ns, 0);
  EXPECT_EQ(std::count_if(entries.begin(), entries.end(), [](const AuditEntry& e) { return e.issuer.empty(); }), 0);
  // The log itself is private to the agent's user.
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "node1" / "audit.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST_F(Security, SecuredCloudRunsCommandsMonitoringAndHistory) {
  start_agent("node1", {"web"});
  start_agent("node2", {"web"});
  start_agent("node3", {"db"});
  ASSERT_TRUE(manager().wait_for_hosts(3, milliseconds(20000)).ok()) << manager().hosts().size();
  auto web = manager().execute(Target::group("web"), "vm.suspend", {{"vm", "db1"}});
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ(web->hosts.size(), 2U);
  EXPECT_TRUE(web->all_ok());
  EXPECT_EQ(audited("node3", web->command_id), 0U);
  auto join = manager().execute(Target::host("node3"), "group.join", {{"group", "web"}});
  ASSERT_TRUE(join.ok() && join->all_ok());
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.groups()["web"].size() == 3; }, milliseconds(10000)).ok());
  auto all_web = manager().execute(Target::group("web"), "host.info", {});
  ASSERT_TRUE(all_web.ok());
  EXPECT_EQ(all_web->count(HostResult::Outcome::kOk), 3U);
  ASSERT_TRUE(
      manager()
          .wait_until([](const Manager& m) { return m.sample("node1") && m.sample("node2") && m.sample("node3"); },
                      milliseconds(10000))
          .ok());
  std::this_thread::sleep_for(milliseconds(2500));
  auto h = manager().history(Target::all(), {.since_ns = now_ns() - 60'000'000'000LL});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->count(HostResult::Outcome::kOk), 3U);
  for (const auto& hr : h->hosts) {
    ASSERT_FALSE(hr.reply.history.empty()) << hr.host_id;
    EXPECT_GE(hr.reply.history.front().points.size(), 2U) << hr.host_id;
  }
}

// The agents' self-heal for lost secure handshakes, made deterministic: a participant with a
// valid manager identity that reads no host state looks to an agent exactly like a manager whose
// handshake was lost (discovered, never matched). The agent renews its participant, at most
// as often as its backoff allows, and the real manager keeps the host and its commands.
TEST_F(Security, AgentRenewsItsParticipantForAManagerItNeverReaches) {
  issue(pki::Role::kManager, "mute");
  issue(pki::Role::kAgent, "node1");
  agents_["node1"] =
      std::make_unique<testing::AgentProcess>("node1", domain_, root_ / "node1", std::vector<std::string>{}, 4000,
                                              std::vector<std::string>{"--pki", pki_, "--heal-after-ms", "1500"});
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(20000)).ok());
  legit_command_reaches("node1");
  const fs::path log = root_ / "node1" / "agent.log";
  // Renewal lines of the agent's log that name `who`.
  const auto renewals_for = [&](std::string_view who) {
    const auto lines = lines_with(slurp(log), testing::kRenewalLogLine);
    return static_cast<std::size_t>(std::count_if(
        lines.begin(), lines.end(), [&](const std::string& line) { return line.find(who) != std::string::npos; }));
  };
  ASSERT_EQ(renewals_for("manager."), 0U) << slurp(log);
  const auto mute_started = std::chrono::steady_clock::now();
  {
    RawParticipant mute(domain_, files_of(pki_, "manager.mute"));
    ASSERT_TRUE(mute.created());
    for (int i = 0; i < 200 && renewals_for("manager.mute") == 0; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    ASSERT_GE(renewals_for("manager.mute"), 1U) << slurp(log);
    std::this_thread::sleep_for(milliseconds(6000));
  }
  const double mute_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - mute_started).count();
  // Waits of 1.5-2.25 s, then 3-4.5 s, then 6-9 s: at most 3 renewals in the mute's lifetime
  // (about 8-26 s), and none of them for the real manager alone.
  EXPECT_LE(renewals_for("manager.mute"), 3U) << mute_s << " s\n" << slurp(log);
  EXPECT_EQ(renewals_for("manager.") - renewals_for("manager.mute"), 0U) << slurp(log);
  // The real manager sees the host again through the agent's new participant, and commands it.
  ASSERT_TRUE(manager()
                  .wait_until([](const Manager& m) { return m.host("node1") && m.host("node1")->online(); },
                              milliseconds(20000))
                  .ok());
  legit_command_reaches("node1");
}

}  // namespace
}  // namespace cloudmgr
