#include "driver/libvirt/event_loop.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "driver/libvirt/libvirt_error.h"

namespace cloudmgr::libvirt {
namespace {

void silent_error_handler(void* /*user_data*/, virErrorPtr /*error*/) {}

struct LoopState {
  std::mutex mutex;
  int users = 0;       // GUARDED_BY(mutex)
  std::thread thread;  // GUARDED_BY(mutex)
  // Each loop thread runs while the generation it started with is current.
  std::atomic<std::uint64_t> generation{0};
  std::atomic<std::thread::id> loop_thread_id{};
};

LoopState& loop_state() {
  static LoopState* state = new LoopState();  // never destroyed: the loop may outlive statics
  return *state;
}

Status init_status;
std::once_flag init_once;

}  // namespace

Status initialize_libvirt() {
  std::call_once(init_once, [] {
    if (virInitialize() < 0) {
      init_status = last_error("initializing libvirt");
      return;
    }
    virSetErrorFunc(nullptr, silent_error_handler);
    if (virEventRegisterDefaultImpl() < 0) {
      init_status = last_error("registering libvirt's event loop");
    }
  });
  return init_status;
}

EventLoopRef::EventLoopRef() {
  LoopState& s = loop_state();
  const std::lock_guard lock(s.mutex);
  if (s.users++ == 0) {
    if (s.thread.joinable()) {
      s.thread.join();
    }
    const std::uint64_t mine = s.generation.load();
    s.thread = std::thread([&s, mine] {
      s.loop_thread_id = std::this_thread::get_id();
      while (s.generation.load() == mine) {
        if (virEventRunDefaultImpl() < 0) {
          virResetLastError();
        }
      }
    });
  }
}

EventLoopRef::~EventLoopRef() {
  LoopState& s = loop_state();
  const std::lock_guard lock(s.mutex);
  if (--s.users > 0) {
    return;
  }
  ++s.generation;
  // Wake the loop from its poll with a one-shot timer that removes itself.
  const int timer = virEventAddTimeout(
      0, [](int id, void* /*opaque*/) { virEventRemoveTimeout(id); }, nullptr, nullptr);
  if (timer < 0) {
    virResetLastError();
  }
  if (on_loop_thread()) {
    s.thread.detach();  // the last connection was closed from an event callback
  } else if (s.thread.joinable()) {
    s.thread.join();
  }
}

bool EventLoopRef::on_loop_thread() noexcept {
  return loop_state().loop_thread_id.load() == std::this_thread::get_id();
}

}  // namespace cloudmgr::libvirt
