#include "udp_socket.h"

#include <arpa/inet.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <string>

#include "errors.h"

namespace miniflannel {

namespace {

// Datagrams one GSO send carries at most: kernels before 6.11 refuse more (their UDP_MAX_SEGMENTS).
constexpr size_t kMaxSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr size_t kControlSpace = CMSG_SPACE(sizeof(int));

// Asks for `bytes` of socket buffer; as root the *FORCE variants pass the
// net.core.[rw]mem_max cap, which is small by default and would drop bursts.
void SetBuffer(int fd, int force_option, int option, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_option, &bytes, sizeof(bytes)) < 0) {
    setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof(bytes));
  }
}

}  // namespace

void UdpSocket::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "UdpSocket",
                                    {
                                        InstanceAccessor<&UdpSocket::Port>("port"),
                                        InstanceAccessor<&UdpSocket::AddressWords>("addressWords"),
                                        InstanceAccessor<&UdpSocket::SegmentsOverflowed>("segmentsOverflowed"),
                                        InstanceMethod<&UdpSocket::StartReading>("startReading"),
                                        InstanceMethod<&UdpSocket::SendBatch>("sendBatch"),
                                        InstanceMethod<&UdpSocket::Close>("close"),
                                    });
  exports.Set("UdpSocket", ctor);
}

// new UdpSocket(bindAddress: string, port: number, bufferBytes: number)
UdpSocket::UdpSocket(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<UdpSocket>(info), poller_(info.Env(), "miniflannel:udp") {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "UdpSocket(bindAddress, port, bufferBytes)").ThrowAsJavaScriptException();
    return;
  }
  std::string address = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  sockaddr_in6 bind_addr;
  memset(&bind_addr, 0, sizeof(bind_addr));
  auto* bind_addr4 = reinterpret_cast<sockaddr_in*>(&bind_addr);
  bool valid_port = port >= 0 && port <= 65535;
  if (valid_port && inet_pton(AF_INET, address.c_str(), &bind_addr4->sin_addr) == 1) {
    bind_addr4->sin_family = AF_INET;
    bind_addr4->sin_port = htons(static_cast<uint16_t>(port));
  } else if (valid_port && inet_pton(AF_INET6, address.c_str(), &bind_addr.sin6_addr) == 1) {
    bind_addr.sin6_family = AF_INET6;
    bind_addr.sin6_port = htons(static_cast<uint16_t>(port));
    ipv6_ = true;
    address_words_ = 4;
  } else {
    ThrowErrno(env, EINVAL, "'" + address + "' port " + std::to_string(port) + " is not an IPv4 or IPv6 address and port");
    return;
  }
  int fd = socket(ipv6_ ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "creating a UDP socket");
    return;
  }
  int on = 1;
  // Without it, [::] would also take IPv4 datagrams, whose senders arrive as
  // IPv4-mapped addresses that no IPv4 peer's endpoint matches.
  if (ipv6_ && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "making the UDP socket IPv6-only");
    return;
  }
  int buffer_bytes = info[2].As<Napi::Number>().Int32Value();
  SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, buffer_bytes);
  SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, buffer_bytes);
  socklen_t bind_len = ipv6_ ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd, reinterpret_cast<sockaddr*>(&bind_addr), bind_len) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "binding UDP " + (ipv6_ ? "[" + address + "]" : address) + ":" + std::to_string(port));
    return;
  }
  sockaddr_in6 bound;
  socklen_t bound_len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  gro_ = setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  fd_ = fd;
  // sin_port and sin6_port lie at the same offset.
  port_ = ntohs(bound.sin6_port);
}

UdpSocket::~UdpSocket() { Release(); }

Napi::Value UdpSocket::Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }

Napi::Value UdpSocket::AddressWords(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(address_words_));
}

Napi::Value UdpSocket::SegmentsOverflowed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(segments_overflowed_));
}

// startReading(arena: Buffer, slotSize, offsets: Uint32Array, lengths: Uint32Array,
//              sourceIps: Uint32Array (addressWords per entry), sourcePorts: Uint16Array,
//              onBatch: (count, errno) => void)
Napi::Value UdpSocket::StartReading(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0) {
    ThrowErrno(env, EBADF, "UDP socket is closed");
    return env.Undefined();
  }
  if (poller_.active()) {
    ThrowErrno(env, EBUSY, "UDP socket is already being read");
    return env.Undefined();
  }
  if (info.Length() < 7 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
      !info[3].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsTypedArray() || !info[6].IsFunction()) {
    Napi::TypeError::New(env, "startReading(arena, slotSize, offsets, lengths, sourceIps, sourcePorts, onBatch)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  auto offsets = info[2].As<Napi::Uint32Array>();
  auto lengths = info[3].As<Napi::Uint32Array>();
  auto ips = info[4].As<Napi::Uint32Array>();
  auto ports = info[5].As<Napi::Uint16Array>();
  int64_t slot_size = info[1].As<Napi::Number>().Int64Value();
  size_t entries = lengths.ElementLength();
  size_t slots = slot_size > 0 ? arena.Length() / static_cast<size_t>(slot_size) : 0;
  // Each message needs an entry; how many more its datagrams may take is the caller's choice of array sizes.
  size_t messages = std::min(slots, entries);
  if (messages == 0 || offsets.ElementLength() < entries || ips.ElementLength() < entries * address_words_ ||
      ports.ElementLength() < entries) {
    ThrowErrno(env, EINVAL, "read arena and arrays are too small for one batch");
    return env.Undefined();
  }
  arena_ = arena.Data();
  slot_size_ = static_cast<size_t>(slot_size);
  entries_ = entries;
  offsets_ = offsets.Data();
  lengths_ = lengths.Data();
  source_ips_ = ips.Data();
  source_ports_ = ports.Data();
  recv_msgs_.assign(messages, mmsghdr{});
  recv_iovs_.assign(messages, iovec{});
  recv_addrs_.assign(messages, sockaddr_in6{});
  recv_control_.assign(messages * kControlSpace, 0);
  for (size_t i = 0; i < messages; i++) {
    recv_iovs_[i] = {arena_ + i * slot_size_, slot_size_};
    recv_msgs_[i].msg_hdr.msg_iov = &recv_iovs_[i];
    recv_msgs_[i].msg_hdr.msg_iovlen = 1;
    recv_msgs_[i].msg_hdr.msg_name = &recv_addrs_[i];
  }
  if (int err = poller_.Start(fd_, Value(), this, &UdpSocket::Drain, info[6].As<Napi::Function>(),
                              {arena, offsets, lengths, ips, ports})) {
    poller_.Stop();
    ThrowErrno(env, -err, "watching the UDP socket on the event loop");
  }
  return env.Undefined();
}

size_t UdpSocket::Drain(void* self, int* error) {
  auto* sock = static_cast<UdpSocket*>(self);
  size_t messages = sock->recv_msgs_.size();
  for (size_t i = 0; i < messages; i++) {
    msghdr& hdr = sock->recv_msgs_[i].msg_hdr;
    hdr.msg_namelen = sock->ipv6_ ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    hdr.msg_control = sock->gro_ ? sock->recv_control_.data() + i * kControlSpace : nullptr;
    hdr.msg_controllen = sock->gro_ ? kControlSpace : 0;
  }
  int n;
  do {
    n = recvmmsg(sock->fd_, sock->recv_msgs_.data(), static_cast<unsigned>(messages), MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    // ICMP errors queued on the socket (port unreachable from a peer that
    // went away) surface here as ECONNREFUSED and the like; they concern one
    // earlier datagram, not the socket, so reading goes on.
    if (errno != EAGAIN && errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH) *error = errno;
    return 0;
  }
  size_t count = 0;
  for (int i = 0; i < n; i++) {
    const msghdr& hdr = sock->recv_msgs_[i].msg_hdr;
    size_t length = sock->recv_msgs_[i].msg_len;
    size_t segment = length;
    for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&hdr), c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int size;
        memcpy(&size, CMSG_DATA(c), sizeof(size));
        if (size > 0) segment = static_cast<size_t>(size);
      }
    }
    const sockaddr_in6& from = sock->recv_addrs_[i];
    uint32_t words[4];
    if (sock->ipv6_) {
      memcpy(words, &from.sin6_addr, sizeof(words));
      for (uint32_t& word : words) word = ntohl(word);
    } else {
      words[0] = ntohl(reinterpret_cast<const sockaddr_in&>(from).sin_addr.s_addr);
    }
    uint16_t port = ntohs(from.sin6_port);
    size_t address_words = sock->address_words_;
    size_t base = static_cast<size_t>(i) * sock->slot_size_;
    // GRO coalesces only datagrams of one flow, so one sender for the whole message.
    size_t segments = length == 0 ? 1 : (length + segment - 1) / segment;
    // The entries are shared by the messages of one read, and a local sender's GSO train arrives
    // whole, up to UDP_MAX_SEGMENTS (128 since Linux 6.11) where GRO coalesces 64: what does not
    // fit is counted, never written past the arrays.
    size_t room = sock->entries_ - count;
    if (segments > room) {
      sock->segments_overflowed_ += segments - room;
      segments = room;
    }
    for (size_t k = 0; k < segments; k++) {
      size_t at = k * segment;
      sock->offsets_[count] = static_cast<uint32_t>(base + at);
      sock->lengths_[count] = static_cast<uint32_t>(std::min(segment, length - at));
      memcpy(sock->source_ips_ + count * address_words, words, address_words * sizeof(uint32_t));
      sock->source_ports_[count] = port;
      count++;
    }
  }
  return count;
}

bool UdpSocket::SameDestination(const uint32_t* ips, const uint16_t* ports, size_t i, size_t j) const {
  if (ports[i] != ports[j]) return false;
  if (!ipv6_) return ips[i] == ips[j];
  return memcmp(ips + 4 * i, ips + 4 * j, 4 * sizeof(uint32_t)) == 0;
}

socklen_t UdpSocket::SetDestination(size_t message, const uint32_t* ips, const uint16_t* ports, size_t i) {
  sockaddr_in6& to = send_addrs_[message];
  if (ipv6_) {
    memset(&to, 0, sizeof(to));
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(ports[i]);
    uint32_t words[4];
    for (size_t w = 0; w < 4; w++) words[w] = htonl(ips[4 * i + w]);
    memcpy(&to.sin6_addr, words, sizeof(words));
    return sizeof(sockaddr_in6);
  }
  auto& to4 = reinterpret_cast<sockaddr_in&>(to);
  memset(&to4, 0, sizeof(to4));
  to4.sin_family = AF_INET;
  to4.sin_addr.s_addr = htonl(ips[i]);
  to4.sin_port = htons(ports[i]);
  return sizeof(sockaddr_in);
}

// sendBatch(buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array (addressWords per entry),
//           ports: Uint16Array, count) -> datagrams the kernel took
Napi::Value UdpSocket::SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0) {
    ThrowErrno(env, EBADF, "UDP socket is closed");
    return env.Undefined();
  }
  if (info.Length() < 6 || !info[0].IsBuffer() || !info[5].IsNumber()) {
    Napi::TypeError::New(env, "sendBatch(buffer, offsets, lengths, ips, ports, count)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto buffer = info[0].As<Napi::Buffer<uint8_t>>();
  auto offsets = info[1].As<Napi::Uint32Array>();
  auto lengths = info[2].As<Napi::Uint32Array>();
  auto ips = info[3].As<Napi::Uint32Array>();
  auto ports = info[4].As<Napi::Uint16Array>();
  size_t count = info[5].As<Napi::Number>().Uint32Value();
  if (count > offsets.ElementLength() || count > lengths.ElementLength() || count * address_words_ > ips.ElementLength() ||
      count > ports.ElementLength()) {
    ThrowErrno(env, EINVAL, "sendBatch count exceeds an array");
    return env.Undefined();
  }
  if (send_msgs_.size() < count) {
    send_msgs_.resize(count);
    send_iovs_.resize(count);
    send_addrs_.resize(count);
    send_control_.resize(count * kControlSpace);
  }
  // Group runs for GSO: same peer, same size (the last may be shorter), within the limits.
  size_t size = buffer.Length();
  size_t messages = 0;
  std::vector<uint16_t> group_sizes;
  group_sizes.reserve(count);
  for (size_t i = 0; i < count;) {
    size_t offset = offsets[i];
    size_t length = lengths[i];
    if (offset > size || length > size - offset || length == 0) {
      i++;
      continue;
    }
    size_t group_start_iov = i;
    size_t group = 1;
    size_t bytes = length;
    if (gso_) {
      while (i + group < count && group < kMaxSegments) {
        size_t next_offset = offsets[i + group];
        size_t next_length = lengths[i + group];
        if (!SameDestination(ips.Data(), ports.Data(), i, i + group) || next_length > length || next_length == 0 ||
            next_offset > size || next_length > size - next_offset || bytes + next_length > kMaxGsoBytes) {
          break;
        }
        bytes += next_length;
        group++;
        if (next_length < length) break;  // A shorter datagram can only end a run.
      }
    }
    for (size_t k = 0; k < group; k++) {
      send_iovs_[group_start_iov + k] = {buffer.Data() + offsets[i + k], lengths[i + k]};
    }
    socklen_t to_length = SetDestination(messages, ips.Data(), ports.Data(), i);
    mmsghdr& msg = send_msgs_[messages];
    memset(&msg, 0, sizeof(msg));
    msg.msg_hdr.msg_name = &send_addrs_[messages];
    msg.msg_hdr.msg_namelen = to_length;
    msg.msg_hdr.msg_iov = &send_iovs_[group_start_iov];
    msg.msg_hdr.msg_iovlen = group;
    if (group > 1) {
      msg.msg_hdr.msg_control = send_control_.data() + messages * kControlSpace;
      msg.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      cmsghdr* c = CMSG_FIRSTHDR(&msg.msg_hdr);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t segment = static_cast<uint16_t>(length);
      memcpy(CMSG_DATA(c), &segment, sizeof(segment));
    }
    group_sizes.push_back(static_cast<uint16_t>(group));
    messages++;
    i += group;
  }
  size_t next = 0;
  size_t sent = 0;
  while (next < messages) {
    int n = sendmmsg(fd_, send_msgs_.data() + next, static_cast<unsigned>(messages - next), MSG_DONTWAIT);
    if (n > 0) {
      for (int k = 0; k < n; k++) sent += group_sizes[next + k];
      next += static_cast<size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == ENOBUFS) {
      break;  // The socket buffer is full: the rest are dropped, as a full NIC queue would.
    } else {
      // A device without checksum offload refuses UDP GSO (EIO): send singly from now on.
      if (group_sizes[next] > 1 && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) gso_ = false;
      next++;  // The kernel refused this message (EMSGSIZE, say); the rest still go.
    }
  }
  return Napi::Number::New(env, static_cast<double>(sent));
}

void UdpSocket::Release() {
  poller_.Stop();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

Napi::Value UdpSocket::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

}  // namespace miniflannel
