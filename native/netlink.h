// Per-interface IPv4 settings over rtnetlink rather than /proc/sys, which
// container runtimes mount read-only unless the container is privileged.
// CAP_NET_ADMIN in the network namespace is all it needs.
#pragma once

#include <napi.h>

namespace miniflannel {

// setIPv4DevConf(ifname, setting /* IPV4_DEVCONF_* */, value): throws with err.code on failure.
Napi::Value SetIPv4DevConf(const Napi::CallbackInfo& info);

}  // namespace miniflannel
