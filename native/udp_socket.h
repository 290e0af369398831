// UdpSocket: an IPv4 UDP socket that moves datagrams in batches with
// recvmmsg(2) and sendmmsg(2), one syscall per batch each way, driven by the
// Node event loop like TunDevice.
//
// Receiving: each message lands in its own slotSize slot of the arena; with
// UDP GRO one message may hold several datagrams back to back. Datagram i of
// a batch is described by offsets[i], lengths[i], sourceIps[i] (host order)
// and sourcePorts[i].
// Sending: sendBatch() transmits buffer[offsets[i]..+lengths[i]] to
// ips[i]:ports[i] for i < count, synchronously: the bytes may be reused as
// soon as it returns. Runs of equal-sized datagrams to one peer go out as
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
  Napi::Value StartReading(const Napi::CallbackInfo& info);
  Napi::Value SendBatch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static size_t Drain(void* self, int* error);
  void Release();

  int fd_ = -1;
  int port_ = 0;
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
  std::vector<mmsghdr> recv_msgs_;
  std::vector<iovec> recv_iovs_;
  std::vector<sockaddr_in> recv_addrs_;
  std::vector<uint8_t> recv_control_;

  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iovs_;
  std::vector<sockaddr_in> send_addrs_;
  std::vector<uint8_t> send_control_;
};

}  // namespace miniflannel
