// cloudctl's security commands: pki init, pki issue, pki show, and audit (docs/security.md).
#pragma once

#include <CLI/CLI.hpp>

#include "cloudctl/session.h"

namespace cloudctl {

// Adds "pki ..." and "audit" to `app`; their exit code lands in `rc`.
void add_pki_commands(CLI::App& app, Options& o, int& rc);

}  // namespace cloudctl
