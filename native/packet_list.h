// The (buffer, offsets, lengths, count) argument list shared by the calls
// that take a batch of packets from JS, checked once: every packet lies
// inside the buffer.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace miniflannel {

struct PacketList {
  uint8_t* base;
  const uint32_t* offsets;
  const uint32_t* lengths;
  size_t count;
};

// Reads args 0..3; on a bad list throws (TypeError with `usage`, or RangeError) and returns false.
inline bool ParsePacketList(const Napi::CallbackInfo& info, const char* usage, PacketList* out) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
      !info[3].IsNumber() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return false;
  }
  auto buffer = info[0].As<Napi::Buffer<uint8_t>>();
  auto offsets = info[1].As<Napi::Uint32Array>();
  auto lengths = info[2].As<Napi::Uint32Array>();
  size_t count = info[3].As<Napi::Number>().Uint32Value();
  if (count > offsets.ElementLength() || count > lengths.ElementLength()) {
    Napi::RangeError::New(env, "count exceeds the offsets or lengths array").ThrowAsJavaScriptException();
    return false;
  }
  for (size_t i = 0; i < count; i++) {
    if (offsets[i] > buffer.Length() || lengths[i] > buffer.Length() - offsets[i]) {
      Napi::RangeError::New(env, "packet " + std::to_string(i) + " lies outside the buffer").ThrowAsJavaScriptException();
      return false;
    }
  }
  *out = {buffer.Data(), offsets.Data(), lengths.Data(), count};
  return true;
}

}  // namespace miniflannel
