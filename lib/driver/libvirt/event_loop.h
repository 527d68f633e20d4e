// libvirt's default event loop, run on one thread of ours while any connection needs it.
#pragma once

#include "cloudmgr/status.h"

namespace cloudmgr::libvirt {

// Process-wide libvirt set-up, done once before the first connection: virInitialize,
// a silent global error handler (errors are returned as Status, never printed), and
// the default event implementation (it must be registered before virConnectOpen for
// events and keepalives to work on remote connections).
Status initialize_libvirt();

// Reference-counted: the loop thread runs while at least one EventLoopRef lives.
// Thread-safe.
class EventLoopRef {
 public:
  EventLoopRef();
  ~EventLoopRef();
  EventLoopRef(const EventLoopRef&) = delete;
  EventLoopRef& operator=(const EventLoopRef&) = delete;

  // True on the event loop thread (where event callbacks run).
  static bool on_loop_thread() noexcept;
};

}  // namespace cloudmgr::libvirt
