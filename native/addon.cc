#include <napi.h>

#include <vector>

#include "netlink.h"
#include "offload.h"
#include "packet_list.h"
#include "packet_sealer.h"
#include "tun_device.h"
#include "udp_socket.h"

namespace {

// segmentFrame(frame: Buffer /* virtio_net_hdr + packet */, slotSize): Buffer[] | null
// The TUN offload cutter on its own, so tests can feed it crafted frames without a device.
Napi::Value SegmentFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "segmentFrame(frame, slotSize)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto frame = info[0].As<Napi::Buffer<uint8_t>>();
  size_t slot_size = info[1].As<Napi::Number>().Uint32Value();
  if (frame.Length() < miniflannel::kVirtioNetHdrLen || slot_size == 0) return env.Null();
  auto hdr = miniflannel::ParseVirtioNetHdr(frame.Data());
  const uint8_t* packet = frame.Data() + miniflannel::kVirtioNetHdrLen;
  size_t length = frame.Length() - miniflannel::kVirtioNetHdrLen;
  size_t count = miniflannel::SegmentCount(hdr, packet, length);
  if (count == 0) return env.Null();
  std::vector<uint8_t> out(count * slot_size);
  std::vector<uint32_t> lengths(count);
  size_t written = miniflannel::Segment(hdr, packet, length, out.data(), slot_size, lengths.data());
  if (written == 0) return env.Null();
  Napi::Array result = Napi::Array::New(env, written);
  for (size_t i = 0; i < written; i++) {
    result.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, out.data() + i * slot_size, lengths[i]));
  }
  return result;
}

// joinPackets(buffer, offsets: Uint32Array, lengths: Uint32Array, count, udpSegmentation = false): Buffer[]
// What the offloading TUN writer would write (virtio_net_hdr + packet each),
// on a device with or without USO, so tests can check the joining without a
// device. Rewrites `buffer` as the writer does.
Napi::Value JoinPackets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  miniflannel::PacketList list;
  const char* usage = "joinPackets(buffer, offsets, lengths, count, udpSegmentation?: boolean)";
  if (!miniflannel::ParsePacketList(info, usage, &list)) return env.Undefined();
  if (info.Length() > 4 && !info[4].IsBoolean() && !info[4].IsUndefined()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool udp_segmentation = info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
  Napi::Array frames = Napi::Array::New(env);
  miniflannel::ForEachFrame(list.base, list.offsets, list.lengths, list.count, udp_segmentation,
                            [&](const iovec* parts, size_t iov, size_t /*packets*/) {
                              std::vector<uint8_t> frame;
                              for (size_t k = 0; k < iov; k++) {
                                auto* bytes = static_cast<const uint8_t*>(parts[k].iov_base);
                                frame.insert(frame.end(), bytes, bytes + parts[k].iov_len);
                              }
                              frames.Set(frames.Length(), Napi::Buffer<uint8_t>::Copy(env, frame.data(), frame.size()));
                            });
  return frames;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  miniflannel::TunDevice::Init(env, exports);
  miniflannel::UdpSocket::Init(env, exports);
  miniflannel::PacketSealer::Init(env, exports);
  exports.Set("setIPv4DevConf", Napi::Function::New(env, miniflannel::SetIPv4DevConf));
  exports.Set("replaceRoute", Napi::Function::New(env, miniflannel::ReplaceRoute));
  exports.Set("replaceRoute6", Napi::Function::New(env, miniflannel::ReplaceRoute6));
  exports.Set("addAddress6", Napi::Function::New(env, miniflannel::AddAddress6));
  exports.Set("deleteLink", Napi::Function::New(env, miniflannel::DeleteLink));
  exports.Set("segmentFrame", Napi::Function::New(env, SegmentFrame));
  exports.Set("joinPackets", Napi::Function::New(env, JoinPackets));
  return exports;
}

NODE_API_MODULE(miniflannel_native, Init)
