// TunDevice: a Linux TUN interface (IFF_TUN | IFF_NO_PI) driven by the Node
// event loop, optionally with TCP and UDP segmentation offload (see offload.h).
//
// Why not the threadpool: a read per packet through libuv's worker threads
// costs a thread hop and a JS callback for every packet. Here readiness is
// watched with uv_poll on the loop thread; on each wake-up up to `slots`
// packets are read into an arena that JS owns, and JS gets one call per batch
// with the packet count. Packet i lives at arena[i * slotSize], its length in
// lengths[i]. The arena is reused on the next wake-up, so JS must finish with
// (or copy) a batch before its callback returns.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include <cstddef>
#include <cstdint>
#include <string>

#include "batch_poller.h"

struct ifreq;

namespace miniflannel {

class TunDevice : public Napi::ObjectWrap<TunDevice> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit TunDevice(const Napi::CallbackInfo& info);
  ~TunDevice() override;

 private:
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value UdpSegmentation(const Napi::CallbackInfo& info);
  Napi::Value SetNumber(const Napi::CallbackInfo& info, unsigned long request, const char* what,
                        void (*store)(struct ifreq&, int));
  Napi::Value SetMtu(const Napi::CallbackInfo& info);
  Napi::Value SetTxQueueLength(const Napi::CallbackInfo& info);
  Napi::Value SetIPv4(const Napi::CallbackInfo& info);
  Napi::Value SetUp(const Napi::CallbackInfo& info);
  Napi::Value StartReading(const Napi::CallbackInfo& info);
  Napi::Value WriteBatch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static size_t Drain(void* self, int* error);
  void Release();
  bool EnsureOpen(Napi::Env env);

  uint32_t WritePlain(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t count);
  uint32_t WriteCoalesced(uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t count);
  size_t DrainPlain(int* error);
  size_t DrainOffloaded(int* error);

  int fd_ = -1;
  std::string name_;
  BatchPoller poller_;
  // With offloads (IFF_VNET_HDR), reads come whole into `scratch_` and are
  // cut into slots; a super-packet that does not fit the rest of a batch
  // waits there for the next one.
  bool offload_ = false;
  // The kernel takes UDP super-packets too (USO, Linux 6.2+): only then are UDP packets joined.
  bool udp_segmentation_ = false;
  std::vector<uint8_t> scratch_;
  size_t scratch_length_ = 0;

  // Read targets, owned by JS and pinned by the poller while reading.
  uint8_t* arena_ = nullptr;
  uint32_t* lengths_ = nullptr;
  size_t slot_size_ = 0;
  size_t slots_ = 0;
};

}  // namespace miniflannel
