// cloudctl's template commands: the store (template import, import-export, capture, list,
// show, versions, delete, export, verify), the hosts' caches (images), and provisioning
// (vm create, vm delete).
#pragma once

#include <CLI/CLI.hpp>

#include "cloudctl/session.h"

namespace cloudctl {

// Adds "template ..." and "images" to `app`, "create" and "delete" to `vm`; their exit code
// lands in `rc`.
void add_template_commands(CLI::App& app, CLI::App& vm, Options& o, int& rc);

}  // namespace cloudctl
