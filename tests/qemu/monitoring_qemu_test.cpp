// Monitoring on the real QEMU tier: the rates an agent publishes for a running VM agree with
// libvirt's own counters, read independently by `virsh domstats` at both ends of a window.
//
// Needs a libvirtd + QEMU at qemu:///system (the ctest fixture `libvirtd`, tests/qemu/libvirtd-up).
// The VM is the conformance tier's (64 MiB, 1 vCPU, a tiny qcow2 made with qemu-img) plus one NIC:
// an NE2000 (ne2k_pci) on an "ethernet" tap that libvirt creates and attaches to nothing, so no
// frame leaves this machine. Its disk holds a boot sector, so that the guest does something
// measurable: it reads one sector through the BIOS, sends four 1000-byte frames, busy-waits until
// the next BIOS timer tick (18.2 Hz) and halts until the one after: about half a vCPU, ~9 disk
// reads (4.6 KB) and ~36 KB of frames sent a second, steadily. The test itself sends the guest
// frames on the tap from the host side (a packet socket), 25 KB/s, so both directions move.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/cloudmgr.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr const char* kUri = "qemu:///system";
constexpr const char* kHostId = "qemu1";
constexpr std::uint32_t kDomain = 171;  // inproc: private to this process
constexpr std::int64_t kSec = 1'000'000'000;
constexpr std::uint32_t kSampleMs = 1000;

// 16-bit real-mode boot sector (GNU as, .code16, loaded at 0x7c00):
//   cli; xor ax,ax; mov ds/es/ss,ax; mov sp,0x7c00; sti; mov [0x7dfd],dl
//   mov ebx,0x80000000                                      ; PCI bus 0, slot 0, config space
//   find: out 0xcf8,ebx; in eax,0xcfc; cmp eax,0x802910ec    ; vendor:device 10ec:8029, the NE2000
//         je found; add ebx,0x800; cmp ebx,0x80010000; jb find
//   idle: hlt; jmp idle                                      ; no NIC: no traffic (the test fails)
//   found: out 0xcf8,ebx|4; in ax,0xcfc; or al,1; out 0xcfc,ax  ; command: I/O decode on
//          out 0xcf8,ebx|0x10; in eax,0xcfc; and ax,0xfffc; mov si,ax   ; BAR0: the I/O base
//          CR(+0)=0x21 (stop, page 0); PSTART(+1)=0x46; PSTOP(+2)=0x80 (a receive ring, so that
//          frames for other MACs are taken and dropped); TPSR(+4)=0x40; TBCR(+5,+6)=1000
//   top: mov ax,0x0201; mov cx,2; xor dh,dh; mov dl,[0x7dfd]; mov bx,0x8000; int 0x13  ; read LBA 1
//        mov cx,4; mov dx,si; send: mov al,0x26; out dx,al; loop send   ; start + transmit, 4 times
//        mov ax,[0x46c]; busy: cmp ax,[0x46c]; je busy                  ; spin one tick
//        hlt; jmp top                                                   ; idle one tick
constexpr std::array<unsigned char, 161> kBootCode = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0x88, 0x16, 0xfd, 0x7d, 0x66,
    0xbb, 0x00, 0x00, 0x00, 0x80, 0x66, 0x89, 0xd8, 0xba, 0xf8, 0x0c, 0x66, 0xef, 0xb2, 0xfc, 0x66, 0xed, 0x66,
    0x3d, 0xec, 0x10, 0x29, 0x80, 0x74, 0x13, 0x66, 0x81, 0xc3, 0x00, 0x08, 0x00, 0x00, 0x66, 0x81, 0xfb, 0x00,
    0x00, 0x01, 0x80, 0x72, 0xdc, 0xf4, 0xeb, 0xfd, 0x66, 0x89, 0xd8, 0x0c, 0x04, 0xba, 0xf8, 0x0c, 0x66, 0xef,
    0xb2, 0xfc, 0xed, 0x0c, 0x01, 0xef, 0x66, 0x89, 0xd8, 0x0c, 0x10, 0xb2, 0xf8, 0x66, 0xef, 0xb2, 0xfc, 0x66,
    0xed, 0x83, 0xe0, 0xfc, 0x89, 0xc6, 0x89, 0xc2, 0xb0, 0x21, 0xee, 0x42, 0xb0, 0x46, 0xee, 0x42, 0xb0, 0x80,
    0xee, 0x42, 0x42, 0xb0, 0x40, 0xee, 0x42, 0xb0, 0xe8, 0xee, 0x42, 0xb0, 0x03, 0xee, 0xb8, 0x01, 0x02, 0xb9,
    0x02, 0x00, 0x30, 0xf6, 0x8a, 0x16, 0xfd, 0x7d, 0xbb, 0x00, 0x80, 0xcd, 0x13, 0xb9, 0x04, 0x00, 0x89, 0xf2,
    0xb0, 0x26, 0xee, 0xe2, 0xfb, 0xa1, 0x6c, 0x04, 0x3b, 0x06, 0x6c, 0x04, 0x74, 0xfa, 0xf4, 0xeb, 0xd9};
constexpr std::size_t kGuestFrameBytes = 1000;  // TBCR above

// Frames the test sends the guest: to a unicast MAC that is not the NIC's, so the NE2000 takes
// them off the wire and drops them (QEMU reads them from the tap, libvirt counts them as rx).
constexpr std::size_t kHostFrameBytes = 500;
constexpr milliseconds kHostFramePeriod{20};

int run(const std::string& cmd) {
  return std::system(cmd.c_str());  // NOLINT(cert-env33-c): test set-up
}

// One `virsh domstats` reading, with the clock read right before and after it.
struct VirshReading {
  std::int64_t before_ns = 0;
  std::int64_t after_ns = 0;
  std::map<std::string, std::string> fields;

  std::int64_t mid_ns() const { return before_ns + (after_ns - before_ns) / 2; }
  std::optional<std::uint64_t> get(const std::string& key) const {
    auto it = fields.find(key);
    if (it == fields.end()) {
      return std::nullopt;
    }
    return std::stoull(it->second);
  }
  // Sum of "<group>.<n>.<suffix>" over a group's devices ("block", "net"); 0 when there is none.
  std::uint64_t device_sum(const std::string& group, const std::string& suffix) const {
    std::uint64_t sum = 0;
    for (const auto& [key, value] : fields) {
      if (!key.starts_with(group + ".") || !key.ends_with("." + suffix)) {
        continue;
      }
      const std::string index = key.substr(group.size() + 1, key.size() - group.size() - 1 - suffix.size() - 1);
      if (!index.empty() && index.find_first_not_of("0123456789") == std::string::npos) {
        sum += std::stoull(value);
      }
    }
    return sum;
  }
  // What the agent reports as memory in use: the guest's view when its balloon driver
  // reports one, else QEMU's resident set.
  std::optional<std::uint64_t> memory_used_bytes(bool* from_guest) const {
    const auto available = get("balloon.available");
    const auto unused = get("balloon.unused");
    *from_guest = available && unused && *available >= *unused;
    if (*from_guest) {
      return (*available - *unused) * 1024;
    }
    const auto rss = get("balloon.rss");
    return rss ? std::optional<std::uint64_t>(*rss * 1024) : std::nullopt;
  }
};

VirshReading virsh_domstats(const std::string& vm) {
  const std::string cmd =
      std::string("virsh -c '") + kUri + "' domstats --cpu-total --balloon --block --interface '" + vm + "' 2>&1";
  VirshReading r;
  std::string text;
  r.before_ns = now_ns();
  FILE* pipe = popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c): test set-up
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return r;
  }
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe) != nullptr) {
    text += buf.data();
  }
  const int rc = pclose(pipe);
  r.after_ns = now_ns();
  EXPECT_EQ(rc, 0) << cmd << ":\n" << text;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    line.erase(0, line.find_first_not_of(' '));
    if (const std::size_t eq = line.find('='); eq != std::string::npos) {
      r.fields[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return r;
}

const VmSample* find_vm(const HostSample& s, const std::string& name) {
  for (const auto& v : s.vms) {
    if (v.name == name) {
      return &v;
    }
  }
  return nullptr;
}

// Sends the guest one frame every kHostFramePeriod through a packet socket bound to the VM's tap
// (host side), from start() until stop(), and counts the frames sent.
class FrameInjector {
 public:
  FrameInjector() = default;
  FrameInjector(const FrameInjector&) = delete;
  FrameInjector& operator=(const FrameInjector&) = delete;
  ~FrameInjector() {
    stop();
    if (fd_ >= 0) {
      close(fd_);
    }
  }

  // Empty on success, else what failed.
  std::string start(const std::string& ifname) {
    const unsigned index = if_nametoindex(ifname.c_str());
    if (index == 0) {
      return "no interface " + ifname + ": " + std::strerror(errno);
    }
    fd_ = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: this socket sends and never receives
    if (fd_ < 0) {
      return std::string("socket(AF_PACKET): ") + std::strerror(errno);
    }
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_ifindex = static_cast<int>(index);
    if (bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      return "bind to " + ifname + ": " + std::strerror(errno);
    }
    thread_ = std::thread([this] { run(); });
    return {};
  }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  std::uint64_t sent() const { return sent_.load(); }
  std::uint64_t failed() const { return failed_.load(); }

 private:
  void run() {
    // To 02:00:00:00:00:01 from 02:00:00:00:00:02 (locally administered), EtherType 0x88b5
    // (IEEE 802 local experimental), zero payload.
    std::array<unsigned char, kHostFrameBytes> frame{};
    const std::array<unsigned char, 14> header = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5};
    std::copy(header.begin(), header.end(), frame.begin());
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      if (send(fd_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size())) {
        ++sent_;
      } else {
        ++failed_;
      }
      next += kHostFramePeriod;
      std::this_thread::sleep_until(next);
    }
  }

  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> failed_{0};
};

class MonitoringQemu : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tag = std::to_string(getpid()) + "-" + random_uuid().substr(0, 8);
    name_ = "cmq" + tag;
    tap_ = "cmq" + random_uuid().substr(0, 8);  // 11 characters: a Linux interface name
    // A directory the QEMU process (user libvirt-qemu) can traverse.
    image_dir_ = "/var/lib/libvirt/images/cloudmgr-mqt-" + tag;
    state_dir_ = fs::temp_directory_path() / ("cloudmgr-monitoring-qemu-" + tag);
    fs::create_directories(image_dir_);
    fs::permissions(image_dir_, fs::perms(0755));
  }

  void TearDown() override {
    // Everything this test made, in reverse order, also after a failed assertion.
    injector_.reset();
    sub_.reset();
    manager_.reset();
    agent_.reset();
    if (hv_ && defined_) {
      const Status s = hv_->undefine_vm(VmRef::by_name(name_), {.force = true});
      EXPECT_TRUE(s.ok()) << "undefining " << name_ << ": " << s;
    }
    if (hv_ && !pool_.empty()) {
      const Status s = hv_->remove_pool(pool_);
      EXPECT_TRUE(s.ok() || s.code() == StatusCode::kNotFound) << "removing pool " << pool_ << ": " << s;
    }
    hv_.reset();
    std::error_code ec;
    fs::remove_all(image_dir_, ec);
    fs::remove_all(state_dir_, ec);
  }

  // The tier's tiny qcow2 (qemu-img), holding the boot sector above.
  std::string make_image() {
    const fs::path raw = image_dir_ / (name_ + ".raw");
    const fs::path qcow2 = image_dir_ / (name_ + ".qcow2");
    {
      std::vector<char> sector(1024 * 1024, 0);
      std::copy(kBootCode.begin(), kBootCode.end(), sector.begin());
      sector[510] = static_cast<char>(0x55);
      sector[511] = static_cast<char>(0xaa);
      std::ofstream out(raw, std::ios::binary);
      out.write(sector.data(), static_cast<std::streamsize>(sector.size()));
    }
    const std::string cmd = "qemu-img convert -q -f raw -O qcow2 '" + raw.string() + "' '" + qcow2.string() + "'";
    EXPECT_EQ(run(cmd), 0) << cmd;
    fs::remove(raw);
    return qcow2.string();
  }

  // Samples received so far (copy).
  std::vector<HostSample> received() {
    const std::lock_guard lock(mutex_);
    return samples_;
  }

  // Waits until a sample taken at or after `after_ns` with the VM in it has arrived; returns it.
  std::optional<HostSample> wait_for_tick(std::int64_t after_ns, milliseconds timeout) {
    std::unique_lock lock(mutex_);
    std::optional<HostSample> out;
    cv_.wait_for(lock, timeout, [&] {
      for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
        if (it->taken_ns >= after_ns && find_vm(*it, name_) != nullptr) {
          out = *it;
          return true;
        }
      }
      return false;
    });
    return out;
  }

  std::string name_;
  std::string tap_;
  std::string pool_;
  fs::path image_dir_;
  fs::path state_dir_;
  std::unique_ptr<Hypervisor> hv_;
  bool defined_ = false;
  std::unique_ptr<Manager> manager_;
  std::unique_ptr<Subscription> sub_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<FrameInjector> injector_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<HostSample> samples_;  // GUARDED_BY(mutex_)
};

TEST_F(MonitoringQemu, PublishedRatesAgreeWithVirshDomstats) {
  // ---- the VM ----
  auto hv = Hypervisor::open({.uri = kUri, .host_id = "monitoring-qemu"});
  ASSERT_TRUE(hv.ok()) << hv.status();
  hv_ = std::move(*hv);
  VmSpec spec{.name = name_, .vcpus = 1, .memory_bytes = 64 * kMiB};
  spec.disks.push_back({.source_path = make_image()});
  spec.nics.push_back({.type = NicType::kEthernet, .source = tap_, .model = "ne2k_pci"});
  auto vm = hv_->define_vm(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  defined_ = true;
  ASSERT_EQ(vm->nics.size(), 1U);
  EXPECT_EQ(vm->nics[0].type, "ethernet");
  EXPECT_EQ(vm->nics[0].source, tap_);
  EXPECT_EQ(vm->nics[0].model, "ne2k_pci");
  const Status started = hv_->start_vm(VmRef::by_name(name_));
  ASSERT_TRUE(started.ok()) << started;

  // ---- a manager subscribed to samples, then the agent (so no tick is missed) ----
  spi::TransportConfig transport;
  transport.kind = "inproc";
  transport.domain_id = kDomain;
  auto m = Manager::open({.transport = transport, .name = "monitoring-qemu-test"});
  ASSERT_TRUE(m.ok()) << m.status();
  manager_ = std::move(*m);
  auto sub = manager_->subscribe_samples([this](const HostSample& s) {
    {
      const std::lock_guard lock(mutex_);
      samples_.push_back(s);
    }
    cv_.notify_all();
  });
  ASSERT_TRUE(sub.ok()) << sub.status();
  sub_ = std::move(*sub);

  AgentOptions options;
  options.hypervisor.uri = kUri;
  options.hypervisor.host_id = kHostId;
  options.state_dir = state_dir_.string();
  options.transport = transport;
  options.sample_ms = kSampleMs;
  options.storage_pool = "cloudmgr-mqt-" + name_.substr(3);  // the agent's template pool: removed in TearDown
  pool_ = options.storage_pool;
  auto agent = Agent::start(options);
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);

  // Let the guest get past the BIOS into its loop: three ticks with valid rates.
  const std::int64_t agent_started_ns = now_ns();
  ASSERT_TRUE(wait_for_tick(agent_started_ns + 3 * kSec, milliseconds(20'000)).has_value())
      << "no samples of " << name_ << " from " << kHostId;

  // Frames for the guest, from now until the window is over.
  injector_ = std::make_unique<FrameInjector>();
  const std::string injecting = injector_->start(tap_);
  ASSERT_EQ(injecting, "") << "sending frames on " << tap_;

  // ---- the window: virsh right after a tick arrived, ~5 s, virsh right after a tick ----
  ASSERT_TRUE(wait_for_tick(now_ns() + kSec, milliseconds(5000)).has_value());  // injecting for one tick
  const auto tick0 = wait_for_tick(now_ns(), milliseconds(5000));
  ASSERT_TRUE(tick0.has_value());
  const VirshReading v0 = virsh_domstats(name_);
  const std::uint64_t frames0 = injector_->sent();
  ASSERT_TRUE(wait_for_tick(tick0->taken_ns + 5 * kSec - kSec / 10, milliseconds(10'000)).has_value());
  const std::uint64_t frames1 = injector_->sent();
  const VirshReading v1 = virsh_domstats(name_);
  injector_->stop();
  ASSERT_TRUE(v0.get("cpu.time") && v1.get("cpu.time")) << "virsh domstats gave " << v0.fields.size() << " fields";
  ASSERT_EQ(v1.get("net.count"), std::optional<std::uint64_t>(1)) << "the VM's NIC is missing from virsh domstats";
  EXPECT_EQ(injector_->failed(), 0U) << "frames the packet socket did not send";

  const std::vector<HostSample> all = received();
  ASSERT_GE(all.size(), 8U);

  // Every sample: real counters, the VM present, rates valid on all but the first tick.
  for (std::size_t i = 0; i < all.size(); ++i) {
    const HostSample& s = all[i];
    EXPECT_EQ(s.host_id, kHostId);
    EXPECT_FALSE(s.simulated) << "tick " << i;
    const VmSample* v = find_vm(s, name_);
    ASSERT_NE(v, nullptr) << "tick " << i << " lacks " << name_;
    EXPECT_EQ(v->vcpus, 1U);
    EXPECT_EQ(s.rates_valid, i > 0) << "tick " << i;
    EXPECT_EQ(v->rates_valid, i > 0) << "tick " << i;
  }

  // The ticks whose whole interval lies between the two virsh readings.
  std::vector<HostSample> in_window;
  for (const HostSample& s : all) {
    if (s.rates_valid && s.taken_ns - s.interval_ns >= v0.after_ns && s.taken_ns <= v1.before_ns) {
      in_window.push_back(s);
    }
  }
  ASSERT_GE(in_window.size(), 3U) << "window " << static_cast<double>(v1.mid_ns() - v0.mid_ns()) / 1e9 << " s";

  const double window_s = static_cast<double>(v1.mid_ns() - v0.mid_ns()) / 1e9;
  const std::uint32_t vcpus = find_vm(in_window[0], name_)->vcpus;
  const std::uint32_t host_cpus = in_window[0].cpus;
  EXPECT_EQ(host_cpus, static_cast<std::uint32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  const double virsh_cpu_pct = 100.0 * static_cast<double>(*v1.get("cpu.time") - *v0.get("cpu.time")) /
                               (static_cast<double>(v1.mid_ns() - v0.mid_ns()) * vcpus);

  double weighted = 0;
  double covered_ns = 0;
  struct Integral {
    const char* group;
    const char* what;
    double agent = 0;     // integral of the agent's rate over the ticks in the window
    double max_tick = 0;  // the largest single tick's worth
    std::uint64_t virsh = 0;
  };
  // The agent's rates against the counters' deltas, device group by device group: disks, NICs.
  std::array<Integral, 6> counters = {{{"block", "rd.bytes"},
                                       {"block", "wr.bytes"},
                                       {"block", "rd.reqs"},
                                       {"block", "wr.reqs"},
                                       {"net", "rx.bytes"},
                                       {"net", "tx.bytes"}}};
  for (Integral& d : counters) {
    d.virsh = v1.device_sum(d.group, d.what) - v0.device_sum(d.group, d.what);
  }
  std::printf(
      "tick  interval_s  vm_cpu_pct  vm_cpu_host_pct  host_cpu_pct  mem_used_MiB  disk_rd_B/s  disk_rd_ops/s  "
      "net_rx_B/s  net_tx_B/s\n");
  for (const HostSample& s : in_window) {
    const VmSample& v = *find_vm(s, name_);
    const double interval_s = static_cast<double>(s.interval_ns) / 1e9;
    std::printf("%4lld  %10.3f  %10.2f  %15.2f  %12.2f  %12.1f  %11.0f  %13.1f  %10.0f  %10.0f\n",
                static_cast<long long>((s.taken_ns - v0.mid_ns()) / 1'000'000), interval_s, v.cpu_pct, v.cpu_host_pct,
                s.cpu_pct, static_cast<double>(v.memory_used_bytes) / static_cast<double>(kMiB),
                v.disk_read_bytes_per_s, v.disk_read_ops_per_s, v.net_rx_bytes_per_s, v.net_tx_bytes_per_s);
    weighted += v.cpu_pct * static_cast<double>(s.interval_ns);
    covered_ns += static_cast<double>(s.interval_ns);

    // The same CPU time as a share of the host (cpu_pct is clamped to 100; never here).
    EXPECT_GE(v.cpu_pct, 0);
    EXPECT_LE(v.cpu_pct, 100);
    if (v.cpu_pct < 100) {
      const double expected = v.cpu_pct * vcpus / host_cpus;
      EXPECT_NEAR(v.cpu_host_pct, expected, 1e-6 * std::max(1.0, expected));
    }
    // Host counters (node CPU times) and VM counters (the VM's cgroup) come from different
    // sources: the host's busy share holds the VM's, give or take.
    EXPECT_GE(s.cpu_pct, 0);
    EXPECT_LE(s.cpu_pct, 100);
    EXPECT_GE(s.cpu_pct, v.cpu_host_pct - 5) << "host " << s.cpu_pct << "% vs the VM's " << v.cpu_host_pct << "%";

    const std::array<double, 6> rates = {v.disk_read_bytes_per_s, v.disk_write_bytes_per_s, v.disk_read_ops_per_s,
                                         v.disk_write_ops_per_s,  v.net_rx_bytes_per_s,     v.net_tx_bytes_per_s};
    for (std::size_t d = 0; d < counters.size(); ++d) {
      EXPECT_GE(rates.at(d), 0) << counters.at(d).what;
      counters.at(d).agent += rates.at(d) * interval_s;
      counters.at(d).max_tick = std::max(counters.at(d).max_tick, rates.at(d) * interval_s);
    }
  }
  const double agent_cpu_pct = weighted / covered_ns;
  std::printf("window %.3f s (virsh reads %.0f / %.0f ms), agent ticks cover %.3f s\n", window_s,
              static_cast<double>(v0.after_ns - v0.before_ns) / 1e6,
              static_cast<double>(v1.after_ns - v1.before_ns) / 1e6, covered_ns / 1e9);
  std::printf("VM cpu: virsh %.2f%% of %u vCPU, agent (time-weighted) %.2f%%, difference %.2f points\n", virsh_cpu_pct,
              vcpus, agent_cpu_pct, agent_cpu_pct - virsh_cpu_pct);
  // As for the counters below: the ticks' CPU time (their rates times their intervals) is the
  // growth of cpu.time over the covered part of the window, so it is at most virsh's delta, and
  // short of it at most by the uncovered part with every vCPU busy. On a loaded machine the
  // guest's share moves from second to second, so comparing the two averages (the window's and
  // the covered part's) is not a bound. Slack: 3 points of the window.
  const double virsh_cpu_ns = static_cast<double>(*v1.get("cpu.time") - *v0.get("cpu.time"));
  const double agent_cpu_ns = weighted / 100.0 * vcpus;
  const double window_ns = static_cast<double>(v1.mid_ns() - v0.mid_ns());
  const double slack_ns = 0.03 * window_ns * vcpus;
  std::printf("VM cpu time: virsh %.3f s, agent %.3f s over %.3f of %.3f s\n", virsh_cpu_ns / 1e9, agent_cpu_ns / 1e9,
              covered_ns / 1e9, window_ns / 1e9);
  EXPECT_LE(agent_cpu_ns, virsh_cpu_ns + slack_ns);
  EXPECT_GE(agent_cpu_ns, virsh_cpu_ns - (window_ns - covered_ns) * vcpus - slack_ns);

  // Each tick's rate times its interval is the counter's delta between two of the agent's reads,
  // so the ticks inside the window add up to the counter's growth over a part of the window: at
  // most virsh's delta, and short of it only by what moved in the gaps at either end (together
  // under two ticks' worth: the window opens and closes right after a tick).
  for (const Integral& d : counters) {
    std::printf("%s %s: virsh delta %llu, agent integral %.1f (largest tick %.1f)\n", d.group, d.what,
                static_cast<unsigned long long>(d.virsh), d.agent, d.max_tick);
    const double virsh = static_cast<double>(d.virsh);
    EXPECT_LE(d.agent, virsh * (1 + 1e-9) + 1e-6) << d.group << "." << d.what;
    EXPECT_GE(d.agent, virsh - 2 * d.max_tick - 1e-6) << d.group << "." << d.what;
  }
  // The directions are the guest's, and the traffic is what was sent: the guest sends only its
  // 1000-byte frames (tx), the test's frames arrive (rx), and the agent saw both move.
  const Integral& rx = counters[4];
  const Integral& tx = counters[5];
  EXPECT_GT(tx.virsh, 0U);
  EXPECT_EQ(tx.virsh % kGuestFrameBytes, 0U) << "the guest's tx holds more than its own frames";
  EXPECT_GT(tx.agent, 0.5 * static_cast<double>(tx.virsh));
  const std::uint64_t injected = (frames1 - frames0) * kHostFrameBytes;
  std::printf("net: %llu frames (%llu bytes) sent to the guest between the reads\n",
              static_cast<unsigned long long>(frames1 - frames0), static_cast<unsigned long long>(injected));
  // A frame sent just before the second read may still sit in the tap's queue.
  EXPECT_GE(rx.virsh + 2 * kHostFrameBytes, injected) << "frames sent to the guest are not its rx";
  EXPECT_GT(rx.agent, 0.5 * static_cast<double>(injected));

  // Memory in use against virsh's reading, with the sample taken nearest to each read.
  for (const VirshReading* r : {&v0, &v1}) {
    bool from_guest = false;
    const auto expected = r->memory_used_bytes(&from_guest);
    ASSERT_TRUE(expected.has_value()) << "virsh gave neither balloon.rss nor balloon.available/unused";
    const auto nearest = std::min_element(all.begin(), all.end(), [&](const HostSample& a, const HostSample& b) {
      return std::llabs(a.taken_ns - r->mid_ns()) < std::llabs(b.taken_ns - r->mid_ns());
    });
    const double used = static_cast<double>(find_vm(*nearest, name_)->memory_used_bytes);
    std::printf("memory: virsh %s %.2f MiB, agent memory_used %.2f MiB (tick %+.0f ms from the read)\n",
                from_guest ? "balloon.available-unused" : "balloon.rss",
                static_cast<double>(*expected) / static_cast<double>(kMiB), used / static_cast<double>(kMiB),
                static_cast<double>(nearest->taken_ns - r->mid_ns()) / 1e6);
    EXPECT_NEAR(used, static_cast<double>(*expected), 0.10 * static_cast<double>(*expected));
  }

  // ---- the agent's history: raw points, the same values as the samples received ----
  const std::int64_t since = v0.mid_ns() - 2 * kSec;
  auto h = manager_->history(Target::host(kHostId), {.vm = name_, .since_ns = since});
  ASSERT_TRUE(h.ok()) << h.status();
  const std::vector<HostSample> after = received();  // published before recorded: a superset
  ASSERT_EQ(h->hosts.size(), 1U);
  ASSERT_TRUE(h->hosts[0].status.ok()) << h->hosts[0].status;
  ASSERT_EQ(h->hosts[0].reply.history.size(), 1U);
  const HistorySeries& series = h->hosts[0].reply.history[0];
  EXPECT_EQ(series.vm_name, name_);
  EXPECT_FALSE(series.simulated);
  std::map<std::int64_t, double> cpu_by_time;
  for (const HostSample& s : after) {
    if (const VmSample* v = find_vm(s, name_); v != nullptr && v->rates_valid) {
      cpu_by_time[s.taken_ns] = v->cpu_pct;
    }
  }
  std::size_t matched = 0;
  for (const HistoryPoint& p : series.points) {
    EXPECT_EQ(p.samples, 1U);
    auto it = cpu_by_time.find(p.start_ns);
    ASSERT_NE(it, cpu_by_time.end()) << "history point at " << p.start_ns << " matches no sample received";
    EXPECT_EQ(p.avg[static_cast<std::size_t>(Metric::kCpuPct)], it->second) << "at " << p.start_ns;
    EXPECT_EQ(p.min[static_cast<std::size_t>(Metric::kCpuPct)], it->second);
    EXPECT_EQ(p.max[static_cast<std::size_t>(Metric::kCpuPct)], it->second);
    ++matched;
  }
  // Every valid tick received since `since` is in the history, but perhaps the last (published
  // before it is recorded).
  std::size_t expected_points = 0;
  for (const HostSample& s : all) {
    if (const VmSample* v = find_vm(s, name_); v != nullptr && v->rates_valid && s.taken_ns >= since) {
      ++expected_points;
    }
  }
  std::printf("history: %zu raw points since the window start - 2 s, all equal to the samples received (%zu)\n",
              matched, expected_points);
  EXPECT_GE(matched + 1, expected_points);
}

}  // namespace
}  // namespace cloudmgr
