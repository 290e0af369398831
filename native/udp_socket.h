// UdpSocket: a UDP socket that moves datagrams in batches with recvmmsg(2)
// and sendmmsg(2), one syscall per batch each way, driven by the Node event
// loop like TunDevice. Its family is its bind address's: an IPv6 address
// makes an IPv6-only socket (IPV6_V6ONLY), so one socket is one family.
//
// Addresses are host-order 32-bit words: one per address on an IPv4 socket,
// four (most significant first) on an IPv6 one. Entry i's address is words
// [i*W, i*W+W) of the address array, W being the socket's addressWords.
// Receiving: each message lands in its own slotSize slot of the arena; with
// UDP GRO one message may hold several datagrams back to back. Datagram i of
// a batch is described by offsets[i], lengths[i], its address in sourceIps
// and sourcePorts[i]. A read takes at most one message per entry; the entries
// are shared by its messages, and datagrams beyond them are not handed on but
// counted in segmentsOverflowed.
// Sending: sendBatch() transmits buffer[offsets[i]..+lengths[i]] to entry
// i's address in ips and ports[i] for i < count, synchronously: the bytes may
// be reused as soon as it returns. Runs of equal-sized datagrams to one peer go out as
// one UDP GSO message (UDP_SEGMENT): one trip through the stack, the same
// datagrams on the wire.
#pragma once

#include <napi.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include "batch_poller.h"

namespace miniflannel {

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit UdpSocket(const Napi::CallbackInfo& info);
  ~UdpSocket() override;

 private:
  Napi::Value Port(const Napi::CallbackInfo& info);
  Napi::Value AddressWords(const Napi::CallbackInfo& info);
  Napi::Value SegmentsOverflowed(const Napi::CallbackInfo& info);
  Napi::Value StartReading(const Napi::CallbackInfo& info);
  Napi::Value SendBatch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static size_t Drain(void* self, int* error);
  void Release();
  // True if entries i and j of a send batch go to the same address and port.
  bool SameDestination(const uint32_t* ips, const uint16_t* ports, size_t i, size_t j) const;
  // Writes entry i's address and port into send_addrs_[message]; returns its length.
  socklen_t SetDestination(size_t message, const uint32_t* ips, const uint16_t* ports, size_t i);

  int fd_ = -1;
  int port_ = 0;
  bool ipv6_ = false;
  // Address words per entry: 1 for IPv4, 4 for IPv6.
  size_t address_words_ = 1;
  BatchPoller poller_;

  bool gro_ = false;
  bool gso_ = true;
  uint8_t* arena_ = nullptr;
  size_t slot_size_ = 0;
  size_t entries_ = 0;
  uint32_t* offsets_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t* source_ips_ = nullptr;
  uint16_t* source_ports_ = nullptr;
  uint64_t segments_overflowed_ = 0;
  std::vector<mmsghdr> recv_msgs_;
  std::vector<iovec> recv_iovs_;
  // Big enough for either family; an IPv4 socket uses the sockaddr_in at the start of each.
  std::vector<sockaddr_in6> recv_addrs_;
  std::vector<uint8_t> recv_control_;

  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iovs_;
  std::vector<sockaddr_in6> send_addrs_;
  std::vector<uint8_t> send_control_;
};

}  // namespace miniflannel
