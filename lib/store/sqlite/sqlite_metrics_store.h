// The SQLite history store's internals that its tests reach: the one place where SQLite's
// result codes meet the canonical codes. Not installed.
#pragma once

#include <string_view>

#include <sqlite3.h>

#include "cloudmgr/status.h"

namespace cloudmgr::sqlite {

// The canonical code for a SQLite result code (primary or extended): busy or locked
// (another process holds the file) and a corrupt, foreign or unopenable file are
// kUnavailable, a full disk or no memory kResourceExhausted, anything else kInternal.
StatusCode status_code_for(int rc) noexcept;

// A Status for the failed call that returned `rc` on `db` (may be null): `what` (what we
// were doing, naming the file) before SQLite's own message. An OK rc becomes kInternal.
Status sqlite_error(sqlite3* db, int rc, std::string_view what);

}  // namespace cloudmgr::sqlite
