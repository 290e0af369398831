#include <napi.h>

#include <vector>

#include "offload.h"
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

// joinPackets(buffer, offsets: Uint32Array, lengths: Uint32Array, count): Buffer[]
// What the offloading TUN writer would write (virtio_net_hdr + packet each),
// so tests can check the joining without a device. Rewrites `buffer` as the writer does.
Napi::Value JoinPackets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
      !info[3].IsNumber()) {
    Napi::TypeError::New(env, "joinPackets(buffer, offsets, lengths, count)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto buffer = info[0].As<Napi::Buffer<uint8_t>>();
  auto offsets = info[1].As<Napi::Uint32Array>();
  auto lengths = info[2].As<Napi::Uint32Array>();
  size_t count = info[3].As<Napi::Number>().Uint32Value();
  if (count > offsets.ElementLength() || count > lengths.ElementLength()) {
    Napi::RangeError::New(env, "count exceeds the arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (size_t i = 0; i < count; i++) {
    if (offsets[i] > buffer.Length() || lengths[i] > buffer.Length() - offsets[i]) {
      Napi::RangeError::New(env, "a packet lies outside the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  Napi::Array frames = Napi::Array::New(env);
  uint8_t* base = buffer.Data();
  for (size_t i = 0; i < count;) {
    auto run = miniflannel::FindTcpRun(base, offsets.Data(), lengths.Data(), i, count);
    std::vector<uint8_t> frame(miniflannel::kVirtioNetHdrLen, 0);
    if (run.packets > 1) {
      bool push = (base[offsets[i + run.packets - 1] + 20 + 13] & 0x08) != 0;
      miniflannel::PrepareTcpRun(base + offsets[i], run, push, frame.data());
    }
    frame.insert(frame.end(), base + offsets[i], base + offsets[i] + lengths[i]);
    for (size_t k = 1; k < run.packets; k++) {
      frame.insert(frame.end(), base + offsets[i + k] + run.headers, base + offsets[i + k] + lengths[i + k]);
    }
    frames.Set(frames.Length(), Napi::Buffer<uint8_t>::Copy(env, frame.data(), frame.size()));
    i += run.packets;
  }
  return frames;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  miniflannel::TunDevice::Init(env, exports);
  miniflannel::UdpSocket::Init(env, exports);
  exports.Set("segmentFrame", Napi::Function::New(env, SegmentFrame));
  exports.Set("joinPackets", Napi::Function::New(env, JoinPackets));
  return exports;
}

NODE_API_MODULE(miniflannel_native, Init)
