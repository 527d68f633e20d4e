#include "cloudctl/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cloudctl {
namespace {

namespace fs = std::filesystem;

// The variables cloudctl reads, forwarded with each call.
constexpr std::array<const char*, 10> kForwardedEnv = {
    "CLOUDMGR_DOMAIN",    "CLOUDMGR_PKI",  "CLOUDMGR_IDENTITY", "CLOUDMGR_STAR", "CLOUDMGR_INVENTORY",
    "CLOUDMGR_TEMPLATES", "XDG_DATA_HOME", "XDG_STATE_HOME",    "HOME",          "CLOUDMGR_DAEMON"};
constexpr std::uint32_t kMaxFrameBytes = 1U << 20;
constexpr int kProtocol = 1;

std::vector<std::string> g_command_line;          // this process's argv
Manager* g_served = nullptr;                      // while serving a call
const std::map<std::string, std::string>* g_env;  // the caller's, while serving a call
std::atomic<bool> g_stop{false};

extern "C" void on_daemon_signal(int /*sig*/) { g_stop = true; }

// A file descriptor closed when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

std::string errno_text(int err) { return std::strerror(err); }  // NOLINT(concurrency-mt-unsafe)

std::string absolute(const std::string& path) {
  if (path.empty()) {
    return path;
  }
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::absolute(path).lexically_normal().string() : p.string();
}

// The cloud a call means; a daemon serves only calls that mean its own.
nlohmann::json cloud_of(const Options& o) {
  std::vector<std::string> star = o.star;
  std::sort(star.begin(), star.end());
  std::vector<std::string> tcp_peers = o.tcp_peers;
  std::sort(tcp_peers.begin(), tcp_peers.end());
  return {{"transport", o.transport},
          {"tcp_peers", tcp_peers},
          {"tcp_directory", o.tcp_directory.empty() ? std::string() : absolute(o.tcp_directory)},
          {"tcp_per_request", o.tcp_per_request},
          {"domain", o.domain},
          {"pki", absolute(o.pki)},
          {"identity", o.pki.empty() ? std::string() : o.identity},
          {"star", star},
          {"inventory", absolute(inventory_path(o))},
          {"templates", absolute(template_store_dir(o))}};
}

std::string describe(const nlohmann::json& cloud) {
  const std::string pki = cloud.value("pki", "");
  return fmt::format(
      "domain {}, {}", cloud.value("domain", 0U),
      pki.empty() ? std::string("unsecured") : fmt::format("secured as {} ({})", cloud.value("identity", ""), pki));
}

// What two clouds differ in: "inventory ('/a' here, '/b' in the call)".
std::string differences(const nlohmann::json& mine, const nlohmann::json& theirs) {
  std::string out;
  for (const auto& [key, value] : mine.items()) {
    const nlohmann::json other = theirs.contains(key) ? theirs[key] : nlohmann::json();
    if (other != value) {
      out += fmt::format("{}{} ({} here, {} in the call)", out.empty() ? "" : ", ", key, value.dump(), other.dump());
    }
  }
  return out.empty() ? "its form" : out;
}

// Whose process is at the other end of a Unix socket.
std::optional<uid_t> peer_uid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return std::nullopt;
  }
  return cred.uid;
}

bool write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// A frame: its length (4 bytes, big-endian), then that many bytes of JSON. With `fds`, the
// descriptors travel with the frame's first byte (SCM_RIGHTS).
bool send_frame(int fd, const nlohmann::json& j, const std::vector<int>& fds = {}) {
  const std::string body = j.dump();
  const auto n = static_cast<std::uint32_t>(body.size());
  const std::array<unsigned char, 4> head = {static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
                                             static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
  if (fds.empty()) {
    return write_all(fd, head.data(), head.size()) && write_all(fd, body.data(), body.size());
  }
  iovec iov{const_cast<unsigned char*>(head.data()), head.size()};  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  ssize_t w = 0;
  do {
    w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  if (w != static_cast<ssize_t>(head.size())) {
    return false;
  }
  return write_all(fd, body.data(), body.size());
}

// Reads one frame; descriptors that came with it are appended to `fds` (owned by the caller).
// `closed`: set when the other side closed the connection before sending anything.
Result<nlohmann::json> read_frame(int fd, std::vector<Fd>* fds = nullptr, bool* closed = nullptr) {
  std::array<unsigned char, 4> head{};
  iovec iov{head.data(), head.size()};
  std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t r = 0;
  do {
    r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) {
    if (closed != nullptr) {
      *closed = r == 0;
    }
    return cloudmgr::unavailable_error(r == 0 ? "the other side closed the connection"
                                              : "reading: " + errno_text(errno));
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int received = -1;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (fds != nullptr) {
          fds->emplace_back(received);
        } else {
          ::close(received);
        }
      }
    }
  }
  if (static_cast<std::size_t>(r) < head.size() &&
      !read_all(fd, head.data() + r, head.size() - static_cast<std::size_t>(r))) {
    return cloudmgr::unavailable_error("a frame's length was cut short");
  }
  const std::uint32_t n = (std::uint32_t{head[0]} << 24) | (std::uint32_t{head[1]} << 16) |
                          (std::uint32_t{head[2]} << 8) | std::uint32_t{head[3]};
  if (n > kMaxFrameBytes) {
    return cloudmgr::invalid_argument_error(fmt::format("a frame of {} bytes (at most {})", n, kMaxFrameBytes));
  }
  std::string body(n, '\0');
  if (!read_all(fd, body.data(), n)) {
    return cloudmgr::unavailable_error("a frame was cut short");
  }
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return cloudmgr::invalid_argument_error("a frame that is not a JSON object");
  }
  return j;
}

// The socket address of `path` (kInvalidArgument when it does not fit).
Result<sockaddr_un> address_of(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return cloudmgr::invalid_argument_error(
        fmt::format("the daemon socket path '{}' is longer than {} bytes", path, sizeof addr.sun_path - 1));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<Fd> connect_to(const std::string& path) {
  Result<sockaddr_un> addr = address_of(path);
  if (!addr.ok()) {
    return addr.status();
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.ok()) {
    return cloudmgr::unavailable_error("socket: " + errno_text(errno));
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {  // NOLINT
    return cloudmgr::unavailable_error(errno_text(errno));
  }
  return fd;
}

// The socket's directory: this user's, and no one else may write in it. `create`: made (0700)
// when missing; an existing one is never changed.
Status private_dir(const fs::path& dir, bool create) {
  std::error_code ec;
  if (create && !fs::exists(dir, ec)) {
    const mode_t old = ::umask(077);
    fs::create_directories(dir, ec);
    ::umask(old);
    if (ec) {
      return cloudmgr::unavailable_error(fmt::format("creating '{}': {}", dir.string(), ec.message()));
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    return cloudmgr::not_found_error(fmt::format("'{}': {}", dir.string(), errno_text(errno)));
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
    return cloudmgr::permission_denied_error(
        fmt::format("'{}' is not a directory of this user (uid {})", dir.string(), ::geteuid()));
  }
  if ((st.st_mode & 022) != 0) {
    return cloudmgr::permission_denied_error(fmt::format(
        "'{}' is writable by others (a daemon's socket needs a directory only its user writes)", dir.string()));
  }
  return {};
}

// Fds 0-2 open (on /dev/null when closed), so that nothing else takes those numbers.
void ensure_standard_fds() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1) {
      const int null_fd = ::open("/dev/null", O_RDWR);  // NOLINT(cppcoreguidelines-pro-type-vararg)
      if (null_fd >= 0 && null_fd != fd) {
        (void)::dup2(null_fd, fd);
        ::close(null_fd);
      }
    }
  }
}

// A signal that interrupts a blocked write (no SA_RESTART): a call stuck writing to a caller
// that stopped reading ends when the daemon is told to stop.
void on_signal(int sig, void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  (void)::sigaction(sig, &sa, nullptr);
}

// Writes to the daemon's own standard error (the calls it serves have theirs).
void say(int err_fd, const std::string& line) {
  const std::string text = fmt::format("cloudctl daemon: {}\n", line);
  (void)!::write(err_fd, text.data(), text.size());
}

class Daemon {
 public:
  // The daemon's own paths made absolute: the calls it serves change its working directory.
  Daemon(const Options& o, std::function<int(int, char**)> cli) : o_(absolute_paths(o)), cli_(std::move(cli)) {}

  int run() {
    path_ = daemon_socket_path(o_);
    if (Status s = private_dir(fs::path(path_).parent_path(), /*create=*/true); !s.ok()) {
      return fail(s.with_context("the daemon socket's directory"));
    }
    if (connect_to(path_).ok()) {
      return fail(cloudmgr::already_exists_error(fmt::format("a daemon already listens on '{}'", path_)));
    }
    struct stat left {};
    if (::lstat(path_.c_str(), &left) == 0) {
      if (!S_ISSOCK(left.st_mode)) {
        return fail(cloudmgr::already_exists_error(fmt::format("'{}' exists and is not a socket", path_)));
      }
      (void)::unlink(path_.c_str());  // a socket left by a daemon that died
    }
    ensure_standard_fds();
    (void)std::signal(SIGPIPE, SIG_IGN);
    on_signal(SIGINT, on_daemon_signal);
    on_signal(SIGTERM, on_daemon_signal);
    home_ = Fd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // NOLINT(cppcoreguidelines-pro-type-vararg)

    Session session(o_, /*samples=*/true, /*forward=*/false);
    if (Status s = session.open(); !s.ok()) {
      return fail(s);
    }
    cloud_ = cloud_of(o_);
    // Commands to the whole cloud and to each group are ready before the first call needs
    // them, and so is each group that appears later.
    Manager& m = session.m();
    (void)m.prepare(cloudmgr::Target::all());
    for (const auto& [group, members] : m.groups()) {
      (void)m.prepare(cloudmgr::Target::group(group));
    }
    Result<std::unique_ptr<cloudmgr::Subscription>> watch = m.subscribe_events([&m](const cloudmgr::CloudEvent& e) {
      if (e.kind == cloudmgr::CloudEvent::Kind::kHostGroupsChanged ||
          e.kind == cloudmgr::CloudEvent::Kind::kHostOnline) {
        for (const auto& g : e.groups) {
          (void)m.prepare(cloudmgr::Target::group(g));
        }
      }
    });
    if (Status s = listen(); !s.ok()) {
      return fail(s);
    }
    saved_ = {Fd(::fcntl(0, F_DUPFD_CLOEXEC, 3)), Fd(::fcntl(1, F_DUPFD_CLOEXEC, 3)),
              Fd(::fcntl(2, F_DUPFD_CLOEXEC, 3))};
    const auto hosts = session.m().hosts();
    say(saved_[2].get(),
        fmt::format("serving {} on {} ({} hosts online); pid {}", describe(cloud_), path_,
                    std::count_if(hosts.begin(), hosts.end(), [](const cloudmgr::HostEntry& h) { return h.online(); }),
                    ::getpid()));
    g_served = &session.m();
    while (!g_stop) {
      pollfd p{listen_.get(), POLLIN, 0};
      const int n = ::poll(&p, 1, 250);
      if (n <= 0) {
        continue;
      }
      Fd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // EMFILE and the like: no busy loop
        continue;
      }
      try {
        serve(client.get());
      } catch (const std::exception& e) {  // a malformed call never takes the daemon down
        say(saved_[2].get(), std::string("a bad call: ") + e.what());
      }
    }
    g_served = nullptr;
    if (watch.ok()) {
      watch->reset();  // before the manager's Session goes
    }
    listen_.reset();
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) {
      (void)::unlink(path_.c_str());
    }
    say(saved_[2].get(), fmt::format("stopped after {} call(s)", calls_));
    return kExitOk;
  }

 private:
  Status listen() {
    Result<sockaddr_un> addr = address_of(path_);
    if (!addr.ok()) {
      return addr.status();
    }
    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const mode_t old = ::umask(077);
    const int bound = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);  // NOLINT
    ::umask(old);
    if (!listen_.ok() || bound != 0 || ::listen(listen_.get(), 16) != 0) {
      return cloudmgr::unavailable_error(fmt::format("listening on '{}': {}", path_, errno_text(errno)));
    }
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0) {
      inode_ = st.st_ino;
    }
    return {};
  }

  void serve(int client) {
    if (peer_uid(client) != ::geteuid()) {
      say(saved_[2].get(), "refused a call from another user");
      return;
    }
    const timeval timeout{5, 0};  // a caller that connects and sends nothing does not hold the daemon
    (void)::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::vector<Fd> fds;
    bool closed = false;
    Result<nlohmann::json> request = read_frame(client, &fds, &closed);
    if (!request.ok()) {
      if (!closed) {  // else a probe: a daemon starting checks whether one already listens
        say(saved_[2].get(), "a bad call: " + request.status().message());
      }
      return;
    }
    const nlohmann::json& r = *request;
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;
    std::string problem;
    if (!r.contains("protocol") || !r["protocol"].is_number_integer() || r["protocol"].get<int>() != kProtocol) {
      problem = fmt::format("protocol {} (this daemon speaks {})",
                            r.contains("protocol") ? r["protocol"].dump() : "none", kProtocol);
    } else if (fds.size() != 3) {
      problem = fmt::format("{} file descriptors (expected 3: input, output, error)", fds.size());
    } else if (!r.contains("argv") || !r["argv"].is_array() || r["argv"].empty() || !r.contains("cwd") ||
               !r["cwd"].is_string() || !r.contains("env") || !r["env"].is_object() || !r.contains("cloud")) {
      problem = "a call without argv, cwd, env or cloud";
    } else {
      for (const auto& a : r["argv"]) {
        if (!a.is_string()) {
          problem = "a non-string argument";
          break;
        }
        argv.push_back(a.get<std::string>());
      }
      for (const auto& [k, v] : r["env"].items()) {
        if (v.is_string()) {
          env[k] = v.get<std::string>();
        }
      }
    }
    if (problem.empty() && !r["cloud"].is_object()) {
      problem = "a call whose cloud is not an object";
    } else if (problem.empty() && r["cloud"] != cloud_) {
      problem = fmt::format("it serves {}; the call differs in {}", describe(cloud_), differences(cloud_, r["cloud"]));
    }
    if (!problem.empty()) {
      (void)send_frame(client, {{"accepted", false}, {"why", problem}});
      say(saved_[2].get(), "refused a call: " + problem);
      return;
    }
    // The caller commits to us only now (it may have given up waiting while we served
    // another call, and run on its own): its "go" settles who runs the command.
    if (!send_frame(client, {{"accepted", true}})) {
      return;
    }
    Result<nlohmann::json> go = read_frame(client);
    if (!go.ok() || !go->value("go", false)) {
      return;
    }
    const auto started = std::chrono::steady_clock::now();
    const int rc = run_call(argv, r["cwd"].get<std::string>(), env, fds);
    (void)send_frame(client, {{"exit", rc}});
    ++calls_;
    std::string line;
    for (std::size_t i = 1; i < argv.size(); ++i) {
      line += (i > 1 ? " " : "") + argv[i];
    }
    say(saved_[2].get(),
        fmt::format("call {}: {} -> exit {} in {:.2f} s", calls_, line, rc,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  }

  // Runs one command line with the caller's descriptors as 0, 1, 2, in its working directory.
  int run_call(std::vector<std::string>& argv, const std::string& cwd, const std::map<std::string, std::string>& env,
               const std::vector<Fd>& fds) {
    std::fflush(stdout);
    std::fflush(stderr);
    for (int i = 0; i < 3; ++i) {
      (void)::dup2(fds[static_cast<std::size_t>(i)].get(), i);
    }
    // Buffered as the caller's own process would be: by line on a terminal, fully otherwise.
    (void)std::setvbuf(stdout, nullptr, ::isatty(1) != 0 ? _IOLBF : _IOFBF, BUFSIZ);
    int rc = kExitFailed;
    if (::chdir(cwd.c_str()) != 0) {
      std::fprintf(stderr, "cloudctl: the daemon cannot enter the working directory '%s': %s\n", cwd.c_str(),
                   errno_text(errno).c_str());
    } else {
      std::vector<char*> args;
      args.reserve(argv.size() + 1);
      for (auto& a : argv) {
        args.push_back(a.data());
      }
      args.push_back(nullptr);
      g_env = &env;
      try {
        rc = cli_(static_cast<int>(argv.size()), args.data());
      } catch (const Forwarded& f) {
        rc = f.exit_code;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "cloudctl: the daemon failed the call: %s\n", e.what());
      }
      g_env = nullptr;
    }
    std::cout.flush();
    std::cerr.flush();
    std::fflush(stdout);
    std::fflush(stderr);
    std::clearerr(stdout);  // a caller that went away leaves an error behind
    std::clearerr(stderr);
    std::cout.clear();
    std::cerr.clear();
    for (int i = 0; i < 3; ++i) {
      (void)::dup2(saved_[static_cast<std::size_t>(i)].get(), i);
    }
    if (!home_.ok() || ::fchdir(home_.get()) != 0) {
      (void)::chdir("/");
    }
    return rc;
  }

  int fail(const Status& s) const {
    std::fprintf(stderr, "cloudctl daemon: %s\n", s.to_string().c_str());
    return kExitFailed;
  }

  static Options absolute_paths(Options o) {
    for (std::string* p : {&o.pki, &o.store}) {
      *p = absolute(*p);
    }
    if (o.inventory != "none") {
      o.inventory = absolute(o.inventory);
    }
    return o;
  }

  const Options o_;
  std::function<int(int, char**)> cli_;
  Fd home_;  // the working directory the daemon started in
  std::string path_;
  nlohmann::json cloud_;
  Fd listen_;
  ino_t inode_ = 0;
  std::array<Fd, 3> saved_;
  std::size_t calls_ = 0;
};

}  // namespace

const char* env(const char* name) {
  if (g_env != nullptr) {
    auto it = g_env->find(name);
    return it == g_env->end() ? nullptr : it->second.c_str();
  }
  return std::getenv(name);  // NOLINT(concurrency-mt-unsafe): cloudctl never sets its environment
}

Manager* served_manager() { return g_served; }

std::vector<std::shared_ptr<void>>& call_storage() {
  static std::vector<std::shared_ptr<void>> storage;
  return storage;
}

void set_command_line(int argc, char** argv) { g_command_line.assign(argv, argv + argc); }

std::string daemon_socket_path(const Options& o) {
  if (!o.daemon.empty()) {
    return absolute(o.daemon);
  }
  if (const char* v = env("CLOUDMGR_DAEMON"); v != nullptr && *v != '\0' && std::string_view(v) != "off") {
    return absolute(v);
  }
  std::string dir;
  if (const char* xdg = env("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    dir = std::string(xdg) + "/cloudmgr";
  } else {
    dir = fmt::format("/tmp/cloudmgr-{}", ::geteuid());
  }
  return fmt::format("{}/cloudctl-{}.sock", dir, o.domain);
}

std::optional<int> forward_to_daemon(const Options& o) {
  const char* setting = env("CLOUDMGR_DAEMON");
  if (o.no_daemon || g_command_line.empty() || (setting != nullptr && std::string_view(setting) == "off")) {
    return std::nullopt;
  }
  const std::string path = daemon_socket_path(o);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return std::nullopt;
  }
  if (Status s = private_dir(fs::path(path).parent_path(), /*create=*/false); !s.ok()) {
    std::fprintf(stderr, "cloudctl: not using the daemon socket '%s': %s\n", path.c_str(), s.message().c_str());
    return std::nullopt;
  }
  Result<Fd> fd = connect_to(path);
  if (!fd.ok()) {
    return std::nullopt;  // no daemon listening (a socket left behind)
  }
  if (peer_uid(fd->get()) != ::geteuid()) {
    std::fprintf(stderr, "cloudctl: not using the daemon at '%s': it runs as another user\n", path.c_str());
    return std::nullopt;
  }
  nlohmann::json vars = nlohmann::json::object();
  for (const char* name : kForwardedEnv) {
    if (const char* v = env(name)) {
      vars[name] = v;
    }
  }
  const nlohmann::json request = {{"protocol", kProtocol},
                                  {"argv", g_command_line},
                                  {"cwd", fs::current_path(ec).string()},
                                  {"env", vars},
                                  {"cloud", cloud_of(o)}};
  if (!send_frame(fd->get(), request, {0, 1, 2})) {
    std::fprintf(stderr, "cloudctl: the daemon at '%s' did not take the call; running without it\n", path.c_str());
    return std::nullopt;
  }
  // A daemon busy with another call (one at a time) does not hold this one for long: past
  // the wait, the call runs on its own (and the daemon, told nothing, drops it).
  const timeval wait{2, 0};
  (void)::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  Result<nlohmann::json> answer = read_frame(fd->get());
  if (!answer.ok()) {
    std::fprintf(stderr,
                 "cloudctl: the daemon at '%s' did not answer within 2 s (busy with another call); "
                 "running without it\n",
                 path.c_str());
    return std::nullopt;
  }
  if (!answer->value("accepted", false)) {
    std::fprintf(stderr, "cloudctl: the daemon at '%s' refused the call (%s); running without it\n", path.c_str(),
                 answer->value("why", "").c_str());
    return std::nullopt;
  }
  const timeval forever{0, 0};
  (void)::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
  if (!send_frame(fd->get(), {{"go", true}})) {
    std::fprintf(stderr, "cloudctl: the daemon at '%s' went away; running without it\n", path.c_str());
    return std::nullopt;
  }
  Result<nlohmann::json> done = read_frame(fd->get());
  if (!done.ok() || !done->contains("exit") || !(*done)["exit"].is_number_integer()) {
    std::fprintf(stderr, "cloudctl: the daemon at '%s' stopped before the command finished\n", path.c_str());
    return kExitFailed;
  }
  return (*done)["exit"].get<int>();
}

void add_daemon_command(CLI::App& app, Options& o, int& rc, std::function<int(int, char**)> cli) {
  auto* d = app.add_subcommand("daemon",
                               "serve this user's cloudctl calls from one long-lived manager (runs until "
                               "SIGINT/SIGTERM): no discovery wait, no lost secure handshakes");
  d->callback([&o, &rc, cli = std::move(cli)] { rc = Daemon(o, cli).run(); });
}

}  // namespace cloudctl
