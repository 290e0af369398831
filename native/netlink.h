// Interface settings and routes over rtnetlink rather than /proc/sys or the
// `ip` command: container runtimes mount /proc/sys read-only unless the
// container is privileged, and the image carries no iproute2. CAP_NET_ADMIN
// in the network namespace is all it needs. Each call is one synchronous
// request and its acknowledgement, at start-up and clean-up only.
#pragma once

#include <napi.h>

namespace miniflannel {

// setIPv4DevConf(ifname, setting /* IPV4_DEVCONF_* */, value): throws with err.code on failure.
Napi::Value SetIPv4DevConf(const Napi::CallbackInfo& info);

// replaceRoute(ifname, network /* IPv4, host order */, prefixLength): routes the
// block into the interface in the main table, replacing any route to the same
// block (`ip route replace NETWORK/LEN dev IFNAME`). Throws with err.code.
Napi::Value ReplaceRoute(const Napi::CallbackInfo& info);

// replaceRoute6(ifname, network /* IPv6 text */, prefixLength): the IPv6 twin of
// replaceRoute (`ip -6 route replace NETWORK/LEN dev IFNAME`). Throws with err.code.
Napi::Value ReplaceRoute6(const Napi::CallbackInfo& info);

// addAddress6(ifname, address /* IPv6 text */, prefixLength): gives the
// interface the address with no duplicate address detection, replacing its
// flags if it has it already (`ip -6 addr replace ADDR/LEN dev IFNAME nodad`).
// Throws with err.code.
Napi::Value AddAddress6(const Napi::CallbackInfo& info);

// deleteLink(ifname): deletes the interface; the kernel drops its routes. Throws with err.code.
Napi::Value DeleteLink(const Napi::CallbackInfo& info);

}  // namespace miniflannel
