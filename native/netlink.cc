#include "netlink.h"

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace miniflannel {

namespace {

// Appends an attribute header (and payload) at `at`; returns it so nests can grow its length.
rtattr* PutAttr(char* message, size_t* length, unsigned short type, const void* data, size_t size) {
  auto* attr = reinterpret_cast<rtattr*>(message + NLMSG_ALIGN(*length));
  attr->rta_type = type;
  attr->rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
  if (size > 0) std::memcpy(RTA_DATA(attr), data, size);
  *length = NLMSG_ALIGN(*length) + RTA_ALIGN(attr->rta_len);
  return attr;
}

void EndNest(char* message, size_t length, rtattr* nest) {
  nest->rta_len = static_cast<unsigned short>(message + length - reinterpret_cast<char*>(nest));
}

// RTM_SETLINK { IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { setting: value } } } }; returns 0 or an errno.
int SetDevConf(unsigned ifindex, unsigned short setting, uint32_t value) {
  alignas(NLMSG_ALIGNTO) char message[256] = {};
  auto* header = reinterpret_cast<nlmsghdr*>(message);
  header->nlmsg_type = RTM_SETLINK;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  header->nlmsg_seq = 1;
  size_t length = NLMSG_LENGTH(sizeof(ifinfomsg));
  auto* link = static_cast<ifinfomsg*>(NLMSG_DATA(header));
  link->ifi_family = AF_UNSPEC;
  link->ifi_index = static_cast<int>(ifindex);
  rtattr* af_spec = PutAttr(message, &length, IFLA_AF_SPEC, nullptr, 0);
  rtattr* inet = PutAttr(message, &length, AF_INET, nullptr, 0);
  rtattr* conf = PutAttr(message, &length, IFLA_INET_CONF, nullptr, 0);
  PutAttr(message, &length, setting, &value, sizeof(value));
  EndNest(message, length, conf);
  EndNest(message, length, inet);
  EndNest(message, length, af_spec);
  header->nlmsg_len = static_cast<uint32_t>(length);

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  int result = 0;
  if (sendto(fd, message, length, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    result = errno;
  } else {
    alignas(NLMSG_ALIGNTO) char reply[1024];
    ssize_t got = recv(fd, reply, sizeof(reply), 0);
    auto* answer = reinterpret_cast<nlmsghdr*>(reply);
    if (got < 0) {
      result = errno;
    } else if (!NLMSG_OK(answer, static_cast<size_t>(got)) || answer->nlmsg_type != NLMSG_ERROR) {
      result = EPROTO;
    } else {
      result = -static_cast<nlmsgerr*>(NLMSG_DATA(answer))->error;
    }
  }
  close(fd);
  return result;
}

}  // namespace

Napi::Value SetIPv4DevConf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "setIPv4DevConf(ifname, setting, value)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) {
    ThrowErrno(env, errno, "no interface '" + name + "'");
    return env.Undefined();
  }
  int err = SetDevConf(ifindex, static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value()),
                       info[2].As<Napi::Number>().Uint32Value());
  if (err != 0) ThrowErrno(env, err, "setting an IPv4 option of '" + name + "' over rtnetlink (needs CAP_NET_ADMIN)");
  return env.Undefined();
}

}  // namespace miniflannel
