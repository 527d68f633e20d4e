// cloudctl's monitoring views: hosts (state, last seen, usage now), top (a live cloud-wide
// view), monitor hosts (usage by host over a period), monitor history (a series as a table)
// and monitor chart (terminal, PNG or SVG).
#pragma once

#include <CLI/CLI.hpp>

#include "cloudctl/session.h"

namespace cloudctl {

int cmd_hosts(const Options& o);
// Adds "top" and "monitor ..." to `app`; their exit code lands in `rc`.
void add_monitor_commands(CLI::App& app, Options& o, int& rc);

}  // namespace cloudctl
