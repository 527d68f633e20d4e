// Provisioning from templates on the real QEMU tier (qemu:///system): the time to instantiate a
// VM from a template against the size of its base image, next to the bare libvirt overlay it is
// made of and to the full copy that provisioning without copy-on-write would cost.
//
// Three bases: 64 MiB and 1 GiB qcow2 full of data, 4 GiB raw with 256 MiB of data in 8 extents
// (the rest holes). The data is xorshift noise (nothing in it is zero, so qemu-img stores every
// cluster, as for a real image). Per base:
//   BM_FirstCreateWithTransfer  the first Manager::create_vms, which sends the base to the host
//                               (once per process: reported, not repeated)
//   BM_CreateVmFromTemplate     Manager::create_vms of one VM (not started), base cached, through
//                               an in-process Agent on qemu:///system (inproc transport)
//   BM_BareOverlay              Hypervisor::create_volume of the same qcow2 overlay over the same
//                               cached base: libvirt's storage API, no agent, no manager
//   BM_BareOverlayAndDefine     the same overlay + Hypervisor::define_vm of the VM the agent defines
//   BM_FullCopy                 Hypervisor::clone_volume: a standalone qcow2 copy of the base
//                               (virStorageVolCreateXMLFrom, qemu-img convert inside libvirtd)
//   BM_CpCopy                   `cp --sparse=always` of the base file, for reference
// Deleting what an iteration made is outside the timing.
//
// Everything lives under /var/lib/libvirt/images/cloudmgr-pbench-<pid> (QEMU's user can read
// it): the generated images, the template store, the agent's state and its storage pool. At the
// end this removes its VMs, its pool and that directory, and stops libvirtd only if it started it
// (tests/qemu/libvirtd-up). On SIGINT/SIGTERM/SIGHUP the running benchmark stops at its next
// iteration and the same clean-up runs; a second signal, or 60 s without the benchmark thread
// getting there, cleans up from the signal thread at once.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/cloudmgr.h"

extern char** environ;  // NOLINT(readability-identifier-naming)

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using cloudmgr::kGiB;
using cloudmgr::kMiB;
using std::chrono::milliseconds;

constexpr const char* kUri = "qemu:///system";
constexpr std::uint32_t kDomain = 174;  // inproc: private to this process
constexpr const char* kImagesRoot = "/var/lib/libvirt/images";
constexpr std::uint64_t kMinFreeBytes = 8 * kGiB;
constexpr const char* kLibvirtdState = "/tmp/pbench-lv";

struct BaseKind {
  const char* label;  // in the benchmark's name
  cloudmgr::ImageFormat format;
  std::uint64_t virtual_bytes;
  std::uint64_t extent_bytes;  // data extents of this size...
  std::uint64_t extent_step;   // ...every this many bytes (= extent_bytes: all data)
};

constexpr std::array<BaseKind, 3> kBases = {{
    {"64MiB_qcow2", cloudmgr::ImageFormat::kQcow2, 64 * kMiB, 64 * kMiB, 64 * kMiB},
    {"1GiB_qcow2", cloudmgr::ImageFormat::kQcow2, 1 * kGiB, 64 * kMiB, 64 * kMiB},
    {"4GiB_raw_sparse", cloudmgr::ImageFormat::kRaw, 4 * kGiB, 32 * kMiB, 512 * kMiB},
}};

// Set by the first SIGINT/SIGTERM/SIGHUP: every benchmark stops at its next iteration and main
// tears down as usual.
std::atomic<int> g_signal{0};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

// Runs argv (no shell), waits, and returns its exit status (-1: it could not run or was killed).
// Its stdout goes to /dev/null; stderr stays ours, so a failing tool says why.
int run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  // The children must not inherit our blocked termination signals (see main).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return -1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// xorshift64: fast noise with no zero words.
class Noise {
 public:
  explicit Noise(std::uint64_t seed) : x_(seed) {}
  void fill(std::vector<std::uint64_t>& buf) {
    for (auto& w : buf) {
      x_ ^= x_ << 13U;
      x_ ^= x_ >> 7U;
      x_ ^= x_ << 17U;
      w = x_;
    }
  }

 private:
  std::uint64_t x_;
};

// A raw file of `kind.virtual_bytes` with noise in its extents and holes between them.
bool write_raw(const std::string& path, const BaseKind& kind, std::uint64_t seed) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return false;
  }
  bool ok = ::ftruncate(fd, static_cast<off_t>(kind.virtual_bytes)) == 0;
  Noise noise(seed);
  std::vector<std::uint64_t> buf(4 * kMiB / sizeof(std::uint64_t));
  const std::uint64_t chunk = buf.size() * sizeof(std::uint64_t);
  for (std::uint64_t at = 0; ok && at < kind.virtual_bytes; at += kind.extent_step) {
    for (std::uint64_t off = 0; ok && off < kind.extent_bytes; off += chunk) {
      noise.fill(buf);
      ok = ::pwrite(fd, buf.data(), chunk, static_cast<off_t>(at + off)) == static_cast<ssize_t>(chunk);
    }
  }
  return ::close(fd) == 0 && ok;
}

// One base: its template and, once the first VM was made from it, the host's cached copy.
struct Base {
  const BaseKind* kind = nullptr;
  std::string template_name;
  cloudmgr::TemplateInfo info;
  std::uint64_t data_bytes = 0;
  std::string cached_path;  // set by the first create
  std::string first_error;  // why the first create failed
  // The first create, with its transfer.
  double first_s = 0;
  double first_transfer_s = 0;
  double first_provision_s = 0;
  std::uint64_t first_bytes_sent = 0;
};

// The benchmark's world: an Agent on qemu:///system and a Manager with a template store, both in
// this process, and a bare Hypervisor connection. Built on first use; torn down by main (or by the
// signal thread). Only the benchmark thread uses it, apart from emergency_cleanup.
class Fixture {
 public:
  static Fixture& get() {
    static Fixture* f = new Fixture();  // NOLINT(cppcoreguidelines-owning-memory): lives until exit
    return *f;
  }

  const std::string& error() const { return error_; }
  Base& base(std::size_t i) { return bases_[i]; }
  cloudmgr::Manager& manager() { return *manager_; }
  cloudmgr::Hypervisor& hv() { return *hv_; }
  const std::string& host_id() const { return host_id_; }
  const std::string& pool() const { return pool_; }
  const fs::path& root() const { return root_; }
  std::string next_name(const std::string& what) { return prefix_ + what + "-" + std::to_string(++serial_); }

  // Makes sure base i is cached on the host: the first create (timed, with the transfer) and the
  // deletion of its VM. False with base.first_error set when it failed.
  bool ensure_cached(std::size_t i) {
    Base& b = bases_[i];
    if (!b.cached_path.empty() || !b.first_error.empty()) {
      return b.first_error.empty();
    }
    const std::string name = next_name("first");
    const auto t0 = Clock::now();
    auto r = manager_->create_vms(
        {.name = name, .template_ref = {b.template_name, 0}, .where = cloudmgr::Target::host(host_id_)});
    b.first_s = seconds_since(t0);
    if (!r.ok()) {
      b.first_error = "first create_vms: " + r.status().to_string();
      return false;
    }
    b.first_transfer_s = static_cast<double>(r->transfer_ns) / 1e9;
    b.first_provision_s = static_cast<double>(r->provision_ns) / 1e9;
    b.first_bytes_sent = r->image_bytes_sent;
    if (r->image_sent_to.size() != 1) {
      b.first_error = "first create_vms sent the base to " + std::to_string(r->image_sent_to.size()) + " hosts, not 1";
    }
    auto d = manager_->delete_vm(host_id_, name, /*force=*/true);
    if (!d.ok() || !d->all_ok()) {
      b.first_error = "delete_vm after the first create failed";
    }
    const std::string ext = b.info.image.format == cloudmgr::ImageFormat::kQcow2 ? ".qcow2" : ".raw";
    b.cached_path = (root_ / "images" / ("base-" + b.info.image.sha256 + ext)).string();
    if (b.first_error.empty() && !fs::exists(b.cached_path)) {
      b.first_error = "the cached base is not at " + b.cached_path;
    }
    ::sync();  // nor the writeback of the cached base
    return b.first_error.empty();
  }

  // Normal end: stops the agent and manager, then removes what this process made. Idempotent.
  void teardown() {
    const std::lock_guard lock(teardown_mutex_);
    if (torn_down_) {
      return;
    }
    hv_.reset();
    manager_.reset();
    agent_.reset();
    remove_host_state();
    torn_down_ = true;
  }

  // From the signal thread while the benchmark thread may still run: removes VMs, pool, directory
  // (over a connection of its own) and leaves the agent alone: the process exits right after.
  void emergency_cleanup() {
    const std::lock_guard lock(teardown_mutex_);
    if (!torn_down_) {
      remove_host_state();
      torn_down_ = true;
    }
  }

 private:
  Fixture() {
    const std::string pid = std::to_string(getpid());
    prefix_ = "pb" + pid + "-";
    host_id_ = "pbench-" + pid;
    pool_ = "cloudmgr-pbench-" + pid;
    root_ = fs::path(kImagesRoot) / ("cloudmgr-pbench-" + pid);
    // A path that calls exit() past main's teardown still removes what was made (a no-op after it).
    std::atexit([] { Fixture::get().emergency_cleanup(); });
    error_ = set_up();
    if (!error_.empty()) {
      std::fprintf(stderr, "provision_bench: %s\n", error_.c_str());
    }
  }

  std::string set_up() {
    if (run({"timeout", "5", "virsh", "-c", kUri, "version"}) != 0) {
      std::fprintf(stderr, "provision_bench: %s does not answer: starting libvirtd (%s/libvirtd-up %s)\n", kUri,
                   CLOUDMGR_BENCH_QEMU_SCRIPTS, kLibvirtdState);
      started_libvirtd_ = true;  // libvirtd-down stops only what libvirtd-up recorded
      if (run({std::string(CLOUDMGR_BENCH_QEMU_SCRIPTS) + "/libvirtd-up", kLibvirtdState}) != 0) {
        return std::string("libvirtd-up failed: no libvirtd at ") + kUri;
      }
    }
    struct statvfs vfs {};
    if (::statvfs(kImagesRoot, &vfs) != 0) {
      return std::string("statvfs(") + kImagesRoot + ") failed: is libvirt installed?";
    }
    const std::uint64_t free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < kMinFreeBytes) {
      return std::string("only ") + std::to_string(free_bytes / kMiB) + " MiB free under " + kImagesRoot +
             ": this benchmark needs 8 GiB (images, their store copies, the host's cache, full copies)";
    }
    std::error_code ec;
    if (!fs::create_directory(root_, ec) || ec) {
      return "cannot create " + root_.string() + ": " + ec.message();
    }
    made_root_ = true;
    fs::permissions(root_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
    for (const char* sub : {"src", "store", "agent", "images", "copies"}) {
      fs::create_directories(root_ / sub, ec);
    }

    cloudmgr::spi::TransportConfig transport;
    transport.kind = "inproc";
    transport.domain_id = kDomain;
    cloudmgr::AgentOptions options;
    options.hypervisor.uri = kUri;
    options.hypervisor.host_id = host_id_;
    options.state_dir = (root_ / "agent").string();
    options.image_dir = (root_ / "images").string();
    options.storage_pool = pool_;
    options.transport = transport;
    options.sample_ms = 0;
    options.history = false;
    auto agent = cloudmgr::Agent::start(options);
    if (!agent.ok()) {
      return "Agent::start: " + agent.status().to_string();
    }
    agent_ = std::move(*agent);
    auto m = cloudmgr::Manager::open({.transport = transport,
                                      .name = "provision-bench",
                                      .samples = false,
                                      .template_dir = (root_ / "store").string()});
    if (!m.ok()) {
      return "Manager::open: " + m.status().to_string();
    }
    manager_ = std::move(*m);
    if (g_signal != 0) {
      return "interrupted by a signal";
    }
    if (auto s = manager_->wait_for_hosts(1, milliseconds(30'000)); !s.ok()) {
      return "wait_for_hosts: " + s.to_string();
    }
    auto hv = cloudmgr::Hypervisor::open({.uri = kUri, .host_id = host_id_ + "-bare"});
    if (!hv.ok()) {
      return "Hypervisor::open: " + hv.status().to_string();
    }
    hv_ = std::move(*hv);

    for (std::size_t i = 0; i < kBases.size(); ++i) {
      if (g_signal != 0) {
        return "interrupted by a signal";
      }
      if (std::string e = make_base(i); !e.empty()) {
        return e;
      }
    }
    ::sync();  // the first benchmark does not pay for the writeback of the generated images
    return {};
  }

  // Generates base i and imports it as a template (the file moves into the store).
  std::string make_base(std::size_t i) {
    const BaseKind& k = kBases[i];
    Base& b = bases_[i];
    b.kind = &k;
    b.template_name = std::string("pbench-") + k.label;
    b.data_bytes = k.virtual_bytes / k.extent_step * k.extent_bytes;
    const fs::path raw = root_ / "src" / (std::string(k.label) + ".raw");
    const auto t0 = Clock::now();
    if (!write_raw(raw.string(), k, 0x9e3779b97f4a7c15ULL + i)) {
      return "writing " + raw.string() + " failed";
    }
    fs::path image = raw;
    if (k.format == cloudmgr::ImageFormat::kQcow2) {
      image = root_ / "src" / (std::string(k.label) + ".qcow2");
      if (run({"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw.string(), image.string()}) != 0) {
        return "qemu-img convert of " + raw.string() + " failed";
      }
      std::error_code ec;
      fs::remove(raw, ec);
    }
    auto t = manager_->import_template({.name = b.template_name,
                                        .spec = {.vcpus = 1, .memory_bytes = 64 * kMiB},
                                        .image_path = image.string(),
                                        .take_file = true});
    if (!t.ok()) {
      return "import_template " + b.template_name + ": " + t.status().to_string();
    }
    b.info = *t;
    std::fprintf(stderr, "provision_bench: base %s: %llu bytes, %llu of data, made in %.1f s\n", k.label,
                 static_cast<unsigned long long>(b.info.image.size_bytes),  // NOLINT(google-runtime-int)
                 static_cast<unsigned long long>(b.data_bytes),             // NOLINT(google-runtime-int)
                 seconds_since(t0));
    return {};
  }

  // The VMs named with our prefix, our pool, our directory; libvirtd if we started it.
  void remove_host_state() {
    if (!made_root_ && !started_libvirtd_) {
      return;
    }
    auto hv = cloudmgr::Hypervisor::open({.uri = kUri, .host_id = host_id_ + "-cleanup"});
    if (hv.ok()) {
      auto vms = (*hv)->list_vms();
      if (vms.ok()) {
        for (const auto& vm : *vms) {
          if (vm.name.starts_with(prefix_)) {
            (void)(*hv)->destroy_vm(cloudmgr::VmRef::by_uuid(vm.uuid));  // fails when not running: fine
            if (auto s = (*hv)->undefine_vm(cloudmgr::VmRef::by_uuid(vm.uuid), {.force = true}); !s.ok()) {
              std::fprintf(stderr, "provision_bench: cleanup: undefine %s: %s\n", vm.name.c_str(),
                           s.to_string().c_str());
            }
          }
        }
      }
      // libvirt refuses to stop a pool while a job of it runs (a full copy being built): wait it out.
      const auto deadline = Clock::now() + std::chrono::seconds(120);
      for (;;) {
        const cloudmgr::Status s = (*hv)->remove_pool(pool_);
        if (s.ok() || s.code() == cloudmgr::StatusCode::kNotFound) {
          break;
        }
        if (Clock::now() > deadline) {
          std::fprintf(stderr, "provision_bench: cleanup: remove_pool %s: %s\n", pool_.c_str(), s.to_string().c_str());
          break;
        }
        std::this_thread::sleep_for(milliseconds(250));
      }
    } else {
      std::fprintf(stderr, "provision_bench: cleanup: %s\n", hv.status().to_string().c_str());
    }
    if (made_root_) {
      std::error_code ec;
      fs::remove_all(root_, ec);
      if (ec) {
        std::fprintf(stderr, "provision_bench: cleanup: removing %s: %s\n", root_.c_str(), ec.message().c_str());
      }
    }
    if (started_libvirtd_) {
      (void)run({std::string(CLOUDMGR_BENCH_QEMU_SCRIPTS) + "/libvirtd-down", kLibvirtdState});
    }
  }

  std::string prefix_;  // of every VM and volume name this process makes
  std::string host_id_;
  std::string pool_;
  fs::path root_;
  std::string error_;
  bool made_root_ = false;
  bool started_libvirtd_ = false;
  std::array<Base, kBases.size()> bases_;
  std::unique_ptr<cloudmgr::Agent> agent_;
  std::unique_ptr<cloudmgr::Manager> manager_;
  std::unique_ptr<cloudmgr::Hypervisor> hv_;
  std::uint64_t serial_ = 0;
  std::mutex teardown_mutex_;
  bool torn_down_ = false;
};

bool g_fixture_used = false;  // set once Fixture::get() may have made something

bool interrupted(benchmark::State& state) {
  if (g_signal == 0) {
    return false;
  }
  state.SkipWithError("interrupted by a signal");
  return true;
}

// The fixture with base i cached, or nullptr after SkipWithError.
Fixture* ready(benchmark::State& state, std::size_t i) {
  if (interrupted(state)) {
    return nullptr;
  }
  g_fixture_used = true;
  Fixture& f = Fixture::get();
  if (!f.error().empty()) {
    state.SkipWithError(f.error().c_str());
    return nullptr;
  }
  if (!f.ensure_cached(i)) {
    state.SkipWithError(f.base(i).first_error.c_str());
    return nullptr;
  }
  return &f;
}

void base_counters(benchmark::State& state, const Base& b) {
  state.counters["base_bytes"] = benchmark::Counter(static_cast<double>(b.info.image.size_bytes),
                                                    benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.counters["data_bytes"] =
      benchmark::Counter(static_cast<double>(b.data_bytes), benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
}

void alloc_counter(benchmark::State& state, double total) {
  state.counters["alloc_bytes"] =
      benchmark::Counter(total, benchmark::Counter::kAvgIterations, benchmark::Counter::kIs1024);
}

// The first VM from each base: the base travels to the host (inproc), is verified and cached,
// then the clone is made. Happens once per process, so the figure is the first create's whatever
// benchmark triggered it; manual time = that whole create_vms call.
void BM_FirstCreateWithTransfer(benchmark::State& state, std::size_t i) {
  Fixture* f = ready(state, i);
  if (f == nullptr) {
    return;
  }
  const Base& b = f->base(i);
  for (auto _ : state) {
    state.SetIterationTime(b.first_s);
  }
  base_counters(state, b);
  state.counters["transfer_ms"] = b.first_transfer_s * 1e3;
  state.counters["provision_ms"] = b.first_provision_s * 1e3;
  state.counters["bytes_sent"] = benchmark::Counter(static_cast<double>(b.first_bytes_sent),
                                                    benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.counters["cached_alloc"] = benchmark::Counter(static_cast<double>(allocated_bytes(b.cached_path)),
                                                      benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.SetLabel("once per process");
}

// Manager::create_vms of one VM, not started, base cached: placement, the vm.instantiate command
// over inproc, the agent's overlay + define, its reply. provision_ms: the vm.instantiate round trip
// as the manager times it (CreateVmsResult::provision_ns).
void BM_CreateVmFromTemplate(benchmark::State& state, std::size_t i) {
  Fixture* f = ready(state, i);
  if (f == nullptr) {
    return;
  }
  const Base& b = f->base(i);
  double alloc = 0;
  double provision_s = 0;
  for (auto _ : state) {
    if (interrupted(state)) {
      break;
    }
    const std::string name = f->next_name("vm");
    auto r = f->manager().create_vms(
        {.name = name, .template_ref = {b.template_name, 0}, .where = cloudmgr::Target::host(f->host_id())});
    state.PauseTiming();
    if (!r.ok() || r->vms.size() != 1 || r->vms[0].vm.disks.empty()) {
      state.SkipWithError(
          ("create_vms: " + (r.ok() ? std::string("no VM or disk in the result") : r.status().to_string())).c_str());
      break;
    }
    if (!r->image_sent_to.empty()) {
      state.SkipWithError("create_vms sent the base again: it should have been cached");
      break;
    }
    alloc += static_cast<double>(allocated_bytes(r->vms[0].vm.disks[0].source));
    provision_s += static_cast<double>(r->provision_ns) / 1e9;
    auto d = f->manager().delete_vm(f->host_id(), name, /*force=*/true);
    if (!d.ok() || !d->all_ok()) {
      state.SkipWithError(("delete_vm " + name + " failed" +
                           (d.ok() ? ": " + d->hosts.at(0).status.to_string() : ": " + d.status().to_string()))
                              .c_str());
      break;
    }
    state.ResumeTiming();
  }
  base_counters(state, b);
  alloc_counter(state, alloc);
  state.counters["provision_ms"] = benchmark::Counter(provision_s * 1e3, benchmark::Counter::kAvgIterations);
}

// The bare baseline: the overlay the agent makes (same spec as lib/core/provisioner.cpp), over the
// same cached base, in the same pool, straight through libvirt's storage API. `define`: also
// define the VM the agent would (same spec, through the same Hypervisor call), so that what is
// left between this and BM_CreateVmFromTemplate is the agent's and manager's own work.
void bare_overlay(benchmark::State& state, std::size_t i, bool define) {
  Fixture* f = ready(state, i);
  if (f == nullptr) {
    return;
  }
  const Base& b = f->base(i);
  double alloc = 0;
  for (auto _ : state) {
    if (interrupted(state)) {
      break;
    }
    const std::string vm = f->next_name("bare");
    const std::string name = vm + ".qcow2";
    auto v =
        f->hv().create_volume(f->pool(), {.name = name,
                                          .capacity_bytes = b.info.image.virtual_size_bytes,
                                          .format = "qcow2",
                                          .backing_path = b.cached_path,
                                          .backing_format = std::string(cloudmgr::to_string(b.info.image.format))});
    cloudmgr::Status defined;
    if (v.ok() && define) {
      cloudmgr::VmSpec spec{.name = vm, .vcpus = 1, .memory_bytes = 64 * kMiB};
      spec.disks.push_back({.source_path = v->path, .bus = cloudmgr::DiskBus::kVirtio, .format = "qcow2"});
      defined = f->hv().define_vm(spec).status();
    }
    state.PauseTiming();
    if (!v.ok()) {
      state.SkipWithError(("create_volume: " + v.status().to_string()).c_str());
      break;
    }
    if (define) {
      (void)f->hv().undefine_vm(cloudmgr::VmRef::by_name(vm), {.force = true});
    }
    if (!defined.ok()) {
      state.SkipWithError(("define_vm: " + defined.to_string()).c_str());
      break;
    }
    alloc += static_cast<double>(v->allocation_bytes);
    if (auto s = f->hv().delete_volume(f->pool(), name); !s.ok()) {
      state.SkipWithError(("delete_volume: " + s.to_string()).c_str());
      break;
    }
    state.ResumeTiming();
  }
  base_counters(state, b);
  alloc_counter(state, alloc);
}

void BM_BareOverlay(benchmark::State& state, std::size_t i) { bare_overlay(state, i, false); }
void BM_BareOverlayAndDefine(benchmark::State& state, std::size_t i) { bare_overlay(state, i, true); }

// Provisioning without copy-on-write: a standalone qcow2 copy of the base (libvirtd runs
// qemu-img convert, which flushes the copy to disk before it returns).
void BM_FullCopy(benchmark::State& state, std::size_t i) {
  Fixture* f = ready(state, i);
  if (f == nullptr) {
    return;
  }
  const Base& b = f->base(i);
  double alloc = 0;
  for (auto _ : state) {
    if (interrupted(state)) {
      break;
    }
    const std::string name = f->next_name("copy") + ".qcow2";
    auto v = f->hv().clone_volume(f->pool(), name, b.cached_path);
    state.PauseTiming();
    if (!v.ok()) {
      state.SkipWithError(("clone_volume: " + v.status().to_string()).c_str());
      break;
    }
    alloc += static_cast<double>(v->allocation_bytes);
    if (auto s = f->hv().delete_volume(f->pool(), name); !s.ok()) {
      state.SkipWithError(("delete_volume: " + s.to_string()).c_str());
      break;
    }
    ::sync();  // the next iteration starts with no writeback of this one pending
    state.ResumeTiming();
  }
  base_counters(state, b);
  alloc_counter(state, alloc);
}

// The plain file copy. cp does not flush: its data may still be in the page cache when it returns
// (and is dropped unwritten by the delete). fdatasync_ms: flushing the copy afterwards (untimed).
void BM_CpCopy(benchmark::State& state, std::size_t i) {
  Fixture* f = ready(state, i);
  if (f == nullptr) {
    return;
  }
  const Base& b = f->base(i);
  double alloc = 0;
  double flush_s = 0;
  for (auto _ : state) {
    if (interrupted(state)) {
      break;
    }
    const std::string dst = (f->root() / "copies" / f->next_name("cp")).string();
    const int rc = run({"cp", "--sparse=always", b.cached_path, dst});
    state.PauseTiming();
    if (rc != 0) {
      state.SkipWithError(("cp " + b.cached_path + " " + dst + " failed").c_str());
      break;
    }
    alloc += static_cast<double>(allocated_bytes(dst));
    const auto t0 = Clock::now();
    const int fd = ::open(dst.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)::fdatasync(fd);
      ::close(fd);
    }
    flush_s += seconds_since(t0);
    std::error_code ec;
    fs::remove(dst, ec);
    ::sync();
    state.ResumeTiming();
  }
  base_counters(state, b);
  alloc_counter(state, alloc);
  state.counters["fdatasync_ms"] = benchmark::Counter(flush_s * 1e3, benchmark::Counter::kAvgIterations);
}

void register_all() {
  using Fn = void (*)(benchmark::State&, std::size_t);
  struct Entry {
    const char* name;
    Fn fn;
    int iterations;
    bool manual;
  };
  const std::array<Entry, 6> entries = {{
      {"BM_FirstCreateWithTransfer", BM_FirstCreateWithTransfer, 1, true},
      {"BM_CreateVmFromTemplate", BM_CreateVmFromTemplate, 10, false},
      {"BM_BareOverlay", BM_BareOverlay, 10, false},
      {"BM_BareOverlayAndDefine", BM_BareOverlayAndDefine, 10, false},
      {"BM_FullCopy", BM_FullCopy, 5, false},
      {"BM_CpCopy", BM_CpCopy, 5, false},
  }};
  for (const Entry& e : entries) {
    for (std::size_t i = 0; i < kBases.size(); ++i) {
      auto* b = benchmark::RegisterBenchmark((std::string(e.name) + "/" + kBases[i].label).c_str(),
                                             [fn = e.fn, i](benchmark::State& s) { fn(s, i); });
      b->Iterations(e.iterations)->Unit(benchmark::kMillisecond);
      if (e.manual) {
        b->UseManualTime();
      } else {
        b->UseRealTime();
      }
    }
  }
}

// Waits for a termination signal (blocked in every other thread) and asks the benchmark thread to
// stop; cleans up itself on a second signal or when that thread does not get there in 60 s.
void signal_thread(sigset_t set) {
  int sig = 0;
  if (sigwait(&set, &sig) != 0) {
    return;
  }
  g_signal = sig;
  std::fprintf(stderr, "provision_bench: signal %d: stopping after the current step, then cleaning up\n", sig);
  const timespec wait{.tv_sec = 60, .tv_nsec = 0};
  (void)sigtimedwait(&set, nullptr, &wait);
  std::fprintf(stderr, "provision_bench: cleaning up now\n");
  if (g_fixture_used) {
    Fixture::get().emergency_cleanup();
  }
  std::_Exit(128 + sig);
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread starts (libvirt's, the agent's), so that every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(signal_thread, set).detach();
  // A write to a socket whose peer closed it then fails the call (EPIPE) instead of killing the
  // process: one interrupted run here died of SIGPIPE half-way through its clean-up (cause not found).
  std::signal(SIGPIPE, SIG_IGN);

  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_fixture_used) {
    Fixture::get().teardown();
  }
  return g_signal != 0 ? 128 + g_signal : 0;
}
