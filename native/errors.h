// Errors from the native side carry a POSIX code (err.code = 'EPERM') so the
// TypeScript wrapper can branch with a property check, never by parsing text.
#pragma once

#include <napi.h>
#include <string>

namespace miniflannel {

// Throws `${CODE}: ${what}` with err.code and err.errno set. The caller
// writes `what` so that it says what to change ("requires CAP_NET_ADMIN").
void ThrowErrno(Napi::Env env, int err, const std::string& what);

const char* ErrnoName(int err);

// `what`, plus what to grant when `err` says permission was refused.
std::string PermissionHint(int err, const std::string& what);

}  // namespace miniflannel
