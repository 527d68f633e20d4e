// The long-lived local manager (`cloudctl daemon`, shared/DESIGN.md "Discovery"): one Manager
// whose participant has met the cloud (secured: its handshakes done) serves the cloudctl calls of
// its user through a Unix socket, so that a call neither waits for discovery nor risks a secure
// handshake Fast DDS 2.9.1 loses for good. A call with no daemon to serve it runs its own Manager.
//
// A call is forwarded when it opens its Session: it sends its command line, working directory,
// the environment cloudctl reads and the cloud it means (transport, domain, PKI, identity, star,
// inventory, template store), with its standard input, output and error as file descriptors.
// The daemon runs the same command line against its Manager, writing straight to those
// descriptors, and answers the exit code. A daemon serving another cloud refuses, and the call
// runs on its own (saying so). Calls are served one at a time, in order.
//
// Trust: the socket lives in a directory only the user can enter (0700, $XDG_RUNTIME_DIR/cloudmgr
// or /tmp/cloudmgr-UID), and each side checks the other's uid (SO_PEERCRED): whoever reaches the
// daemon commands the cloud with its identity, so only its own user may.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cloudctl/session.h"

namespace cloudctl {

// The command line of this process, as main received it (what a call forwards).
void set_command_line(int argc, char** argv);

// The socket a daemon for this cloud listens on: --daemon, else $CLOUDMGR_DAEMON, else
// <runtime dir>/cloudctl-<domain>.sock.
std::string daemon_socket_path(const Options& o);

// `cloudctl daemon`. `cli` runs one command line (main's parser) in this process.
void add_daemon_command(CLI::App& app, Options& o, int& rc, std::function<int(int, char**)> cli);

}  // namespace cloudctl
