#include "netlink.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace miniflannel {

namespace {

// One rtnetlink request: a header, its fixed part, then attributes.
class Request {
 public:
  Request(uint16_t type, uint16_t flags, size_t fixed_size) {
    header()->nlmsg_type = type;
    header()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header()->nlmsg_seq = 1;
    length_ = NLMSG_LENGTH(fixed_size);
  }

  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(message_); }
  template <typename Fixed>
  Fixed* fixed() { return static_cast<Fixed*>(NLMSG_DATA(header())); }

  // Appends an attribute; returns it so that a nest can be closed with End.
  rtattr* Put(unsigned short type, const void* data, size_t size) {
    auto* attr = reinterpret_cast<rtattr*>(message_ + NLMSG_ALIGN(length_));
    attr->rta_type = type;
    attr->rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
    if (size > 0) std::memcpy(RTA_DATA(attr), data, size);
    length_ = NLMSG_ALIGN(length_) + RTA_ALIGN(attr->rta_len);
    return attr;
  }
  void End(rtattr* nest) { nest->rta_len = static_cast<unsigned short>(message_ + length_ - reinterpret_cast<char*>(nest)); }

  // Sends the request and waits for its acknowledgement. Returns 0 or an
  // errno; the kernel's own words for a refusal (e.g. "Nexthop device is not
  // up"), which `ip` would have printed, go into *detail.
  int Send(std::string* detail) {
    header()->nlmsg_len = static_cast<uint32_t>(length_);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return errno;
    // Best effort: a kernel without them acknowledges all the same, only with no words and with the request echoed.
    int on = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
    sockaddr_nl kernel = {};
    kernel.nl_family = AF_NETLINK;
    int result = 0;
    if (sendto(fd, message_, length_, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
      result = errno;
    } else {
      alignas(NLMSG_ALIGNTO) char reply[4096];
      ssize_t got = recv(fd, reply, sizeof(reply), 0);
      auto* answer = reinterpret_cast<nlmsghdr*>(reply);
      if (got < 0) {
        result = errno;
      } else if (!NLMSG_OK(answer, static_cast<size_t>(got)) || answer->nlmsg_type != NLMSG_ERROR) {
        result = EPROTO;
      } else {
        result = -static_cast<nlmsgerr*>(NLMSG_DATA(answer))->error;
        if (result != 0) *detail = ExtendedAckMessage(answer);
      }
    }
    close(fd);
    return result;
  }

 private:
  static std::string ExtendedAckMessage(const nlmsghdr* answer) {
    if (!(answer->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
    auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(answer));
    size_t offset = sizeof(nlmsgerr);
    if (!(answer->nlmsg_flags & NLM_F_CAPPED)) offset += error->msg.nlmsg_len - NLMSG_HDRLEN;
    if (NLMSG_HDRLEN + offset > answer->nlmsg_len) return "";
    auto* attr = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(error) + offset);
    int remaining = static_cast<int>(answer->nlmsg_len - NLMSG_HDRLEN - offset);
    for (; RTA_OK(attr, remaining); attr = RTA_NEXT(attr, remaining)) {
      if (attr->rta_type == NLMSGERR_ATTR_MSG) {
        return std::string(static_cast<const char*>(RTA_DATA(attr)), strnlen(static_cast<const char*>(RTA_DATA(attr)), RTA_PAYLOAD(attr)));
      }
    }
    return "";
  }

  alignas(NLMSG_ALIGNTO) char message_[256] = {};
  size_t length_ = 0;
};

// Throws `CODE: what: the kernel's words (strerror)`, with the capability to grant on EPERM.
// rtnetlink refuses a missing capability with EPERM only; its EACCES means
// something else (IPv6 disabled on the device), which the kernel's words say.
void ThrowRefusal(Napi::Env env, int err, const std::string& what, const std::string& detail) {
  std::string hinted = err == EPERM ? PermissionHint(err, what) : what;
  ThrowErrno(env, err, detail.empty() ? hinted : hinted + ": " + detail);
}

// The index of interface `name`, or 0 after throwing ENODEV for `what`.
unsigned InterfaceIndex(Napi::Env env, const std::string& name, const std::string& what) {
  unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) ThrowErrno(env, errno, what + ": no interface '" + name + "'");
  return ifindex;
}

constexpr int kIPv6MinimumMtu = 1280;  // RFC 8200, section 5

// The interface's MTU, or 0 if it cannot be read.
int InterfaceMtu(const std::string& name) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return 0;
  ifreq ifr = {};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  int mtu = ioctl(sock, SIOCGIFMTU, &ifr) < 0 ? 0 : ifr.ifr_mtu;
  close(sock);
  return mtu;
}

// Parses IPv6 text, or throws EINVAL naming `what` and returns false.
bool ParseIPv6(Napi::Env env, const std::string& text, const std::string& what, in6_addr* address) {
  if (inet_pton(AF_INET6, text.c_str(), address) == 1) return true;
  ThrowErrno(env, EINVAL, what + ": '" + text + "' is not an IPv6 address");
  return false;
}

// "ADDRESS/PREFIX" in the canonical form `ip` prints.
std::string IPv6Prefix(const in6_addr& address, uint32_t prefix) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &address, text, sizeof(text));
  return std::string(text) + "/" + std::to_string(prefix);
}

// Reads (ifname, IPv6 text, prefixLength), checks them and resolves the
// interface; returns its index, or 0 after throwing. `describe` words the
// change from the canonical prefix and the interface name.
template <typename Describe>
unsigned IPv6Arguments(const Napi::CallbackInfo& info, const char* usage, Describe describe, in6_addr* address,
                       uint32_t* prefix, std::string* what) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return 0;
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string text = info[1].As<Napi::String>().Utf8Value();
  *prefix = info[2].As<Napi::Number>().Uint32Value();
  if (!ParseIPv6(env, text, describe(text + "/" + std::to_string(*prefix), name), address)) return 0;
  *what = describe(IPv6Prefix(*address, *prefix), name);
  if (*prefix > 128) {
    ThrowErrno(env, EINVAL, *what + ": an IPv6 prefix length is 0 to 128");
    return 0;
  }
  return InterfaceIndex(env, name, *what);
}

// RTM_NEWROUTE (create | replace) { RTA_DST: network, RTA_OIF: ifindex }: a
// unicast route through the device in the main table, as `ip route replace`
// makes it. Throws the kernel's refusal.
void ReplaceDeviceRoute(Napi::Env env, unsigned char family, const void* network, size_t network_size, uint32_t prefix,
                        unsigned char scope, unsigned ifindex, const std::string& what) {
  Request request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, sizeof(rtmsg));
  auto* fixed = request.fixed<rtmsg>();
  fixed->rtm_family = family;
  fixed->rtm_dst_len = static_cast<unsigned char>(prefix);
  fixed->rtm_table = RT_TABLE_MAIN;
  fixed->rtm_protocol = RTPROT_BOOT;
  fixed->rtm_scope = scope;
  fixed->rtm_type = RTN_UNICAST;
  request.Put(RTA_DST, network, network_size);
  uint32_t oif = ifindex;
  request.Put(RTA_OIF, &oif, sizeof(oif));
  std::string detail;
  if (int err = request.Send(&detail)) {
    ThrowRefusal(env, err, what, detail);
  }
}

}  // namespace

// RTM_SETLINK { IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { setting: value } } } }
Napi::Value SetIPv4DevConf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "setIPv4DevConf(ifname, setting, value)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  auto setting = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  uint32_t value = info[2].As<Napi::Number>().Uint32Value();
  std::string what = "setting an IPv4 option of '" + name + "' over rtnetlink";
  unsigned ifindex = InterfaceIndex(env, name, what);
  if (ifindex == 0) return env.Undefined();

  Request request(RTM_SETLINK, 0, sizeof(ifinfomsg));
  request.fixed<ifinfomsg>()->ifi_family = AF_UNSPEC;
  request.fixed<ifinfomsg>()->ifi_index = static_cast<int>(ifindex);
  rtattr* af_spec = request.Put(IFLA_AF_SPEC, nullptr, 0);
  rtattr* inet = request.Put(AF_INET, nullptr, 0);
  rtattr* conf = request.Put(IFLA_INET_CONF, nullptr, 0);
  request.Put(setting, &value, sizeof(value));
  request.End(conf);
  request.End(inet);
  request.End(af_spec);
  std::string detail;
  if (int err = request.Send(&detail)) {
    ThrowRefusal(env, err, what, detail);
  }
  return env.Undefined();
}

// A link-scope IPv4 route into the device.
Napi::Value ReplaceRoute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "replaceRoute(ifname, network, prefixLength)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  in_addr network = {htonl(info[1].As<Napi::Number>().Uint32Value())};
  uint32_t prefix = info[2].As<Napi::Number>().Uint32Value();
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &network, text, sizeof(text));
  std::string what = "routing " + std::string(text) + "/" + std::to_string(prefix) + " into '" + name + "'";
  if (prefix > 32) {
    ThrowErrno(env, EINVAL, what + ": a prefix length is 0 to 32");
    return env.Undefined();
  }
  unsigned ifindex = InterfaceIndex(env, name, what);
  if (ifindex == 0) return env.Undefined();
  ReplaceDeviceRoute(env, AF_INET, &network, sizeof(network), prefix, RT_SCOPE_LINK, ifindex, what);
  return env.Undefined();
}

// An IPv6 route into the device. Universe scope, as `ip -6 route` makes it:
// IPv6 routes have no link scope of their own.
Napi::Value ReplaceRoute6(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  in6_addr network;
  uint32_t prefix;
  std::string what;
  unsigned ifindex = IPv6Arguments(
      info, "replaceRoute6(ifname, network, prefixLength)",
      [](const std::string& block, const std::string& name) { return "routing " + block + " into '" + name + "'"; },
      &network, &prefix, &what);
  if (ifindex == 0) return env.Undefined();
  ReplaceDeviceRoute(env, AF_INET6, &network, sizeof(network), prefix, RT_SCOPE_UNIVERSE, ifindex, what);
  return env.Undefined();
}

// RTM_NEWADDR (create | replace) { IFA_LOCAL: address } for AF_INET6 with
// IFA_F_NODAD: a point-to-point TUN has no neighbours to collide with, and
// DAD would hold the address tentative (unusable as a source) for a second
// or more after every start.
Napi::Value AddAddress6(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  in6_addr address;
  uint32_t prefix;
  std::string what;
  unsigned ifindex = IPv6Arguments(
      info, "addAddress6(ifname, address, prefixLength)",
      [](const std::string& block, const std::string& name) { return "adding " + block + " to '" + name + "'"; },
      &address, &prefix, &what);
  if (ifindex == 0) return env.Undefined();

  Request request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, sizeof(ifaddrmsg));
  auto* fixed = request.fixed<ifaddrmsg>();
  fixed->ifa_family = AF_INET6;
  fixed->ifa_prefixlen = static_cast<unsigned char>(prefix);
  fixed->ifa_flags = IFA_F_NODAD;
  fixed->ifa_scope = RT_SCOPE_UNIVERSE;
  fixed->ifa_index = ifindex;
  request.Put(IFA_LOCAL, &address, sizeof(address));
  std::string detail;
  if (int err = request.Send(&detail)) {
    // The kernel refuses IPv6 on a link below the IPv6 minimum MTU with a bare EINVAL.
    if (err == EINVAL && detail.empty()) {
      int mtu = InterfaceMtu(info[0].As<Napi::String>().Utf8Value());
      if (mtu > 0 && mtu < kIPv6MinimumMtu) {
        detail = "IPv6 needs an MTU of " + std::to_string(kIPv6MinimumMtu) + " or more and the interface has " + std::to_string(mtu);
      }
    }
    ThrowRefusal(env, err, what, detail);
  }
  return env.Undefined();
}

// RTM_DELLINK by index.
Napi::Value DeleteLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "deleteLink(ifname)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string what = "deleting interface '" + name + "'";
  unsigned ifindex = InterfaceIndex(env, name, what);
  if (ifindex == 0) return env.Undefined();

  Request request(RTM_DELLINK, 0, sizeof(ifinfomsg));
  request.fixed<ifinfomsg>()->ifi_family = AF_UNSPEC;
  request.fixed<ifinfomsg>()->ifi_index = static_cast<int>(ifindex);
  std::string detail;
  if (int err = request.Send(&detail)) {
    ThrowRefusal(env, err, what, detail);
  }
  return env.Undefined();
}

}  // namespace miniflannel
