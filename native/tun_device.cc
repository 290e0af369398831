#include "tun_device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"
#include "offload.h"
#include "packet_list.h"

namespace miniflannel {

namespace {

constexpr const char* kCloneDevice = "/dev/net/tun";

// Interface ioctls (MTU, address, flags) need some AF_INET socket to be
// issued on; a short-lived one keeps no extra fd open between calls.
int InterfaceIoctl(unsigned long request, struct ifreq* ifr) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno;
  int result = ioctl(sock, request, ifr) < 0 ? errno : 0;
  close(sock);
  return result;
}

bool ParseIPv4(const std::string& text, in_addr* out) {
  return inet_pton(AF_INET, text.c_str(), out) == 1;
}

// linux/if_tun.h before 6.2 lacks them.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

// Asks for TCP and UDP segmentation offload, and sets `udp_segmentation`
// to whether the kernel took UDP's. It takes USO4 and USO6 together or not
// at all (tun.c set_offload: they are one feature, NETIF_F_GSO_UDP_L4), and
// a kernel before 6.2 refuses the whole set with EINVAL: then TCP's alone.
// Returns 0 or an errno.
int SetOffloads(int fd, bool* udp_segmentation) {
  constexpr unsigned kTcpOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  *udp_segmentation = ioctl(fd, TUNSETOFFLOAD, kTcpOffloads | TUN_F_USO4 | TUN_F_USO6) == 0;
  if (*udp_segmentation) return 0;
  if (errno != EINVAL) return errno;
  return ioctl(fd, TUNSETOFFLOAD, kTcpOffloads) < 0 ? errno : 0;
}

}  // namespace

void TunDevice::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(
      env, "TunDevice",
      {
          InstanceAccessor<&TunDevice::Name>("name"),
          InstanceAccessor<&TunDevice::UdpSegmentation>("udpSegmentation"),
          InstanceMethod<&TunDevice::SetMtu>("setMtu"),
          InstanceMethod<&TunDevice::SetTxQueueLength>("setTxQueueLength"),
          InstanceMethod<&TunDevice::SetIPv4>("setIPv4"),
          InstanceMethod<&TunDevice::SetUp>("setUp"),
          InstanceMethod<&TunDevice::StartReading>("startReading"),
          InstanceMethod<&TunDevice::WriteBatch>("writeBatch"),
          InstanceMethod<&TunDevice::Close>("close"),
      });
  exports.Set("TunDevice", ctor);
}

TunDevice::TunDevice(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<TunDevice>(info), poller_(info.Env(), "miniflannel:tun") {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "TunDevice(name: string, offload: boolean)").ThrowAsJavaScriptException();
    return;
  }
  bool offload = info[1].As<Napi::Boolean>().Value();
  std::string requested = info[0].As<Napi::String>().Utf8Value();
  if (requested.size() >= IFNAMSIZ) {
    ThrowErrno(env, EINVAL, "TUN name '" + requested + "' is longer than " + std::to_string(IFNAMSIZ - 1) + " bytes");
    return;
  }

  int fd = open(kCloneDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ThrowErrno(env, err, PermissionHint(err, std::string("opening ") + kCloneDevice));
    return;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, requested.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    std::string what = "creating TUN device '" + requested + "'";
    if (err == EBUSY) what += ": the name is taken by a device in use";
    ThrowErrno(env, err, PermissionHint(err, what));
    return;
  }
  bool udp_segmentation = false;
  if (offload) {
    int header_size = static_cast<int>(kVirtioNetHdrLen);
    int err = ioctl(fd, TUNSETVNETHDRSZ, &header_size) < 0 ? errno : SetOffloads(fd, &udp_segmentation);
    if (err) {
      close(fd);
      ThrowErrno(env, err, "enabling segmentation offload on '" + requested + "'");
      return;
    }
    scratch_.resize(kMaxFrameLen);
  }
  fd_ = fd;
  name_ = ifr.ifr_name;
  offload_ = offload;
  udp_segmentation_ = udp_segmentation;
}

TunDevice::~TunDevice() { Release(); }

bool TunDevice::EnsureOpen(Napi::Env env) {
  if (fd_ >= 0) return true;
  ThrowErrno(env, EBADF, "TUN device is closed");
  return false;
}

Napi::Value TunDevice::Name(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), name_);
}

Napi::Value TunDevice::UdpSegmentation(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), udp_segmentation_);
}

// Sets one whole-number attribute of the interface with an ioctl; `what`
// names it in the error, `store` puts the value in its ifreq field.
Napi::Value TunDevice::SetNumber(const Napi::CallbackInfo& info, unsigned long request, const char* what,
                                 void (*store)(struct ifreq&, int)) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, std::string(what) + " must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int value = info[0].As<Napi::Number>().Int32Value();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  store(ifr, value);
  if (int err = InterfaceIoctl(request, &ifr)) {
    ThrowErrno(env, err, PermissionHint(err, std::string("setting ") + what + " " + std::to_string(value) + " on " + name_));
  }
  return env.Undefined();
}

Napi::Value TunDevice::SetMtu(const Napi::CallbackInfo& info) {
  return SetNumber(info, SIOCSIFMTU, "MTU", [](struct ifreq& ifr, int mtu) { ifr.ifr_mtu = mtu; });
}

// The kernel sizes the TUN's packet ring by the transmit queue length, and
// drops (rather than queues) what does not fit while the daemon is not
// reading: the length is how long a scheduling gap the daemon can take.
Napi::Value TunDevice::SetTxQueueLength(const Napi::CallbackInfo& info) {
  return SetNumber(info, SIOCSIFTXQLEN, "txqueuelen", [](struct ifreq& ifr, int packets) { ifr.ifr_qlen = packets; });
}

Napi::Value TunDevice::SetIPv4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "setIPv4(address, prefixLength): expected a string and a number")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string text = info[0].As<Napi::String>().Utf8Value();
  int prefix = info[1].As<Napi::Number>().Int32Value();
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  if (!ParseIPv4(text, &addr.sin_addr) || prefix < 0 || prefix > 32) {
    ThrowErrno(env, EINVAL, "'" + text + "/" + std::to_string(prefix) + "' is not an IPv4 address and prefix length");
    return env.Undefined();
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  memcpy(&ifr.ifr_addr, &addr, sizeof(addr));
  if (int err = InterfaceIoctl(SIOCSIFADDR, &ifr)) {
    ThrowErrno(env, err, PermissionHint(err, "setting address " + text + " on " + name_));
    return env.Undefined();
  }

  struct sockaddr_in mask;
  memset(&mask, 0, sizeof(mask));
  mask.sin_family = AF_INET;
  mask.sin_addr.s_addr = prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
  memcpy(&ifr.ifr_netmask, &mask, sizeof(mask));
  if (int err = InterfaceIoctl(SIOCSIFNETMASK, &ifr)) {
    ThrowErrno(env, err, PermissionHint(err, "setting netmask /" + std::to_string(prefix) + " on " + name_));
  }
  return env.Undefined();
}

Napi::Value TunDevice::SetUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  if (int err = InterfaceIoctl(SIOCGIFFLAGS, &ifr)) {
    ThrowErrno(env, err, "reading flags of " + name_);
    return env.Undefined();
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (int err = InterfaceIoctl(SIOCSIFFLAGS, &ifr)) {
    ThrowErrno(env, err, PermissionHint(err, "setting " + name_ + " up"));
  }
  return env.Undefined();
}

// startReading(arena: Buffer, slotSize: number, lengths: Uint32Array,
//              onBatch: (count: number, errno: number) => void)
Napi::Value TunDevice::StartReading(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (poller_.active()) {
    ThrowErrno(env, EBUSY, name_ + " is already being read");
    return env.Undefined();
  }
  if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
      !info[3].IsFunction() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "startReading(arena, slotSize, lengths: Uint32Array, onBatch)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  auto lengths = info[2].As<Napi::Uint32Array>();
  int64_t slot_size = info[1].As<Napi::Number>().Int64Value();
  if (slot_size <= 0 || lengths.ElementLength() == 0 ||
      static_cast<size_t>(slot_size) * lengths.ElementLength() > arena.Length()) {
    ThrowErrno(env, EINVAL, "read arena must hold lengths.length slots of slotSize bytes");
    return env.Undefined();
  }
  arena_ = arena.Data();
  lengths_ = lengths.Data();
  slot_size_ = static_cast<size_t>(slot_size);
  slots_ = lengths.ElementLength();
  if (int err = poller_.Start(fd_, Value(), this, &TunDevice::Drain, info[3].As<Napi::Function>(), {arena, lengths})) {
    poller_.Stop();
    ThrowErrno(env, -err, "watching " + name_ + " on the event loop");
  }
  return env.Undefined();
}

size_t TunDevice::Drain(void* self, int* error) {
  auto* tun = static_cast<TunDevice*>(self);
  return tun->offload_ ? tun->DrainOffloaded(error) : tun->DrainPlain(error);
}

size_t TunDevice::DrainPlain(int* error) {
  size_t count = 0;
  while (count < slots_) {
    ssize_t n = read(fd_, arena_ + count * slot_size_, slot_size_);
    if (n >= 0) {
      lengths_[count++] = static_cast<uint32_t>(n);
    } else if (errno != EINTR) {
      if (errno != EAGAIN) *error = errno;
      break;
    }
  }
  return count;
}

size_t TunDevice::DrainOffloaded(int* error) {
  size_t count = 0;
  while (count < slots_) {
    if (scratch_length_ == 0) {
      ssize_t n = read(fd_, scratch_.data(), scratch_.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) *error = errno;
        break;
      }
      scratch_length_ = static_cast<size_t>(n);
    }
    const uint8_t* packet = scratch_.data() + kVirtioNetHdrLen;
    size_t length = scratch_length_ > kVirtioNetHdrLen ? scratch_length_ - kVirtioNetHdrLen : 0;
    VirtioNetHdr hdr = ParseVirtioNetHdr(scratch_.data());
    size_t needed = length == 0 ? 0 : SegmentCount(hdr, packet, length);
    if (needed > slots_ - count && needed <= slots_) break;  // Starts the next batch.
    size_t written = needed == 0 || needed > slots_
                         ? 0
                         : Segment(hdr, packet, length, arena_ + count * slot_size_, slot_size_, lengths_ + count);
    if (written == 0) {
      // Nothing here can be forwarded; a zero length makes the data plane drop and count it.
      lengths_[count++] = 0;
    } else {
      count += written;
    }
    scratch_length_ = 0;
  }
  return count;
}

// writeBatch(buffer, offsets: Uint32Array, lengths: Uint32Array, count) -> packets written
// TUN takes one packet per write(2); a packet the kernel refuses is skipped,
// and the caller counts the difference as dropped.
Napi::Value TunDevice::WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  PacketList list;
  if (!ParsePacketList(info, "writeBatch(buffer, offsets: Uint32Array, lengths: Uint32Array, count)", &list)) {
    return env.Undefined();
  }
  uint8_t* base = list.base;
  const uint32_t* offsets = list.offsets;
  const uint32_t* lengths = list.lengths;
  size_t count = list.count;
  uint32_t written = offload_ ? WriteCoalesced(base, offsets, lengths, count) : WritePlain(base, offsets, lengths, count);
  return Napi::Number::New(env, written);
}

uint32_t TunDevice::WritePlain(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t count) {
  uint32_t written = 0;
  for (size_t i = 0; i < count; i++) {
    ssize_t n;
    do {
      n = write(fd_, base + offsets[i], lengths[i]);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) written++;
  }
  return written;
}

uint32_t TunDevice::WriteCoalesced(uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t count) {
  uint32_t written = 0;
  ForEachFrame(base, offsets, lengths, count, udp_segmentation_, [&](const iovec* parts, size_t iov, size_t packets) {
    ssize_t n;
    do {
      n = writev(fd_, parts, static_cast<int>(iov));
    } while (n < 0 && errno == EINTR);
    if (n >= 0) written += static_cast<uint32_t>(packets);
  });
  return written;
}

void TunDevice::Release() {
  poller_.Stop();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

Napi::Value TunDevice::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

}  // namespace miniflannel
