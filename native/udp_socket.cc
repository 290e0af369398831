#include "udp_socket.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace miniflannel {

namespace {

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
  sockaddr_in bind_addr;
  memset(&bind_addr, 0, sizeof(bind_addr));
  bind_addr.sin_family = AF_INET;
  bind_addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &bind_addr.sin_addr) != 1 || port < 0 || port > 65535) {
    ThrowErrno(env, EINVAL, "'" + address + ":" + std::to_string(port) + "' is not an IPv4 address and port");
    return;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "creating a UDP socket");
    return;
  }
  int buffer_bytes = info[2].As<Napi::Number>().Int32Value();
  SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, buffer_bytes);
  SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, buffer_bytes);
  if (bind(fd, reinterpret_cast<sockaddr*>(&bind_addr), sizeof(bind_addr)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "binding UDP " + address + ":" + std::to_string(port));
    return;
  }
  sockaddr_in bound;
  socklen_t bound_len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  fd_ = fd;
  port_ = ntohs(bound.sin_port);
}

UdpSocket::~UdpSocket() { Release(); }

Napi::Value UdpSocket::Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }

// startReading(arena: Buffer, slotSize, lengths: Uint32Array, sourceIps: Uint32Array,
//              sourcePorts: Uint16Array, onBatch: (count, errno) => void)
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
  if (info.Length() < 6 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
      !info[3].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsFunction()) {
    Napi::TypeError::New(env, "startReading(arena, slotSize, lengths, sourceIps, sourcePorts, onBatch)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  auto lengths = info[2].As<Napi::Uint32Array>();
  auto ips = info[3].As<Napi::Uint32Array>();
  auto ports = info[4].As<Napi::Uint16Array>();
  int64_t slot_size = info[1].As<Napi::Number>().Int64Value();
  size_t slots = lengths.ElementLength();
  if (slot_size <= 0 || slots == 0 || ips.ElementLength() < slots || ports.ElementLength() < slots ||
      static_cast<size_t>(slot_size) * slots > arena.Length()) {
    ThrowErrno(env, EINVAL, "read arena and arrays must hold lengths.length datagrams of slotSize bytes");
    return env.Undefined();
  }
  arena_ = arena.Data();
  slot_size_ = static_cast<size_t>(slot_size);
  lengths_ = lengths.Data();
  source_ips_ = ips.Data();
  source_ports_ = ports.Data();
  recv_msgs_.assign(slots, mmsghdr{});
  recv_iovs_.assign(slots, iovec{});
  recv_addrs_.assign(slots, sockaddr_in{});
  for (size_t i = 0; i < slots; i++) {
    recv_iovs_[i] = {arena_ + i * slot_size_, slot_size_};
    recv_msgs_[i].msg_hdr.msg_iov = &recv_iovs_[i];
    recv_msgs_[i].msg_hdr.msg_iovlen = 1;
    recv_msgs_[i].msg_hdr.msg_name = &recv_addrs_[i];
  }
  if (int err = poller_.Start(fd_, Value(), this, &UdpSocket::Drain, info[5].As<Napi::Function>(),
                              {arena, lengths, ips, ports})) {
    poller_.Stop();
    ThrowErrno(env, -err, "watching the UDP socket on the event loop");
  }
  return env.Undefined();
}

size_t UdpSocket::Drain(void* self, int* error) {
  auto* sock = static_cast<UdpSocket*>(self);
  size_t slots = sock->recv_msgs_.size();
  for (size_t i = 0; i < slots; i++) sock->recv_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
  int n;
  do {
    n = recvmmsg(sock->fd_, sock->recv_msgs_.data(), static_cast<unsigned>(slots), MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    // ICMP errors queued on the socket (port unreachable from a peer that
    // went away) surface here as ECONNREFUSED and the like; they concern one
    // earlier datagram, not the socket, so reading goes on.
    if (errno != EAGAIN && errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH) *error = errno;
    return 0;
  }
  for (int i = 0; i < n; i++) {
    const sockaddr_in& from = sock->recv_addrs_[i];
    sock->lengths_[i] = sock->recv_msgs_[i].msg_len;
    sock->source_ips_[i] = ntohl(from.sin_addr.s_addr);
    sock->source_ports_[i] = ntohs(from.sin_port);
  }
  return static_cast<size_t>(n);
}

// sendBatch(buffer, offsets: Uint32Array, lengths: Uint32Array, ips: Uint32Array,
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
  if (count > offsets.ElementLength() || count > lengths.ElementLength() || count > ips.ElementLength() ||
      count > ports.ElementLength()) {
    ThrowErrno(env, EINVAL, "sendBatch count exceeds an array");
    return env.Undefined();
  }
  if (send_msgs_.size() < count) {
    send_msgs_.resize(count);
    send_iovs_.resize(count);
    send_addrs_.resize(count);
  }
  size_t size = buffer.Length();
  size_t valid = 0;
  for (size_t i = 0; i < count; i++) {
    size_t offset = offsets[i];
    size_t length = lengths[i];
    if (offset > size || length > size - offset) continue;
    sockaddr_in& to = send_addrs_[valid];
    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(ips[i]);
    to.sin_port = htons(ports[i]);
    send_iovs_[valid] = {buffer.Data() + offset, length};
    mmsghdr& msg = send_msgs_[valid];
    memset(&msg, 0, sizeof(msg));
    msg.msg_hdr.msg_name = &to;
    msg.msg_hdr.msg_namelen = sizeof(to);
    msg.msg_hdr.msg_iov = &send_iovs_[valid];
    msg.msg_hdr.msg_iovlen = 1;
    valid++;
  }
  size_t next = 0;
  size_t sent = 0;
  while (next < valid) {
    int n = sendmmsg(fd_, send_msgs_.data() + next, static_cast<unsigned>(valid - next), MSG_DONTWAIT);
    if (n > 0) {
      next += static_cast<size_t>(n);
      sent += static_cast<size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == ENOBUFS) {
      break;  // The socket buffer is full: the rest are dropped, as a full NIC queue would.
    } else {
      next++;  // The kernel refused this one datagram (EMSGSIZE, say); the rest still go.
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
