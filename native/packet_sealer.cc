#include "packet_sealer.h"

#include <time.h>

#include <cstring>

#include "byte_order.h"

namespace miniflannel {

namespace {

constexpr uint8_t kMagicMac = 0xA1;
constexpr uint8_t kMagicEncrypt = 0xA2;
constexpr int kKeyLen = 32;
constexpr int kNonceLen = 12;
// The counter's low bits count datagrams within one second of the clock.
constexpr int kCounterSecondShift = 23;

uint64_t UnixSeconds() {
  timespec now;
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return static_cast<uint64_t>(now.tv_sec);
}

void MakeNonce(uint8_t* nonce, uint32_t sender_ip, const uint8_t* counter) {
  Store32(nonce, sender_ip);
  std::memcpy(nonce + 4, counter, 8);
}

EVP_CIPHER_CTX* NewContext(const uint8_t* key, bool for_sealing) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return nullptr;
  int ok = for_sealing ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nullptr)
                       : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nullptr);
  if (ok != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

// Reads (buffer, offset, length) at info[first..first+2] and checks the range lies inside the buffer.
bool Range(const Napi::CallbackInfo& info, size_t first, uint8_t** data, size_t* offset, size_t* length) {
  if (!info[first].IsBuffer() || !info[first + 1].IsNumber() || !info[first + 2].IsNumber()) return false;
  auto buffer = info[first].As<Napi::Buffer<uint8_t>>();
  *data = buffer.Data();
  *offset = info[first + 1].As<Napi::Number>().Uint32Value();
  *length = info[first + 2].As<Napi::Number>().Uint32Value();
  return *offset <= buffer.Length() && *length <= buffer.Length() - *offset;
}

}  // namespace

bool PacketSealer::ReplayWindow::CheckAndSet(uint64_t counter) {
  constexpr uint64_t kWords = kWindowBits / 64;
  if (counter > top) {
    uint64_t first_word = top / 64 + 1;
    uint64_t last_word = counter / 64;
    // Forget the words the window slides past; all of them if it jumps a whole window.
    for (uint64_t w = first_word; w <= last_word && w < first_word + kWords; w++) seen[w % kWords] = 0;
    top = counter;
  } else if (top - counter >= kWindowBits) {
    return false;
  }
  uint64_t& word = seen[(counter / 64) % kWords];
  uint64_t bit = uint64_t{1} << (counter % 64);
  if (word & bit) return false;
  word |= bit;
  return true;
}

void PacketSealer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "PacketSealer",
                                    {
                                        InstanceMethod<&PacketSealer::SetKeys>("setKeys"),
                                        InstanceMethod<&PacketSealer::Seal>("seal"),
                                        InstanceMethod<&PacketSealer::Open>("open"),
                                    });
  exports.Set("PacketSealer", ctor);
}

// new PacketSealer(encrypt: boolean, localIp: number, freshnessSeconds: number)
PacketSealer::PacketSealer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketSealer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsBoolean() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "new PacketSealer(encrypt, localIp, freshnessSeconds)").ThrowAsJavaScriptException();
    return;
  }
  encrypt_ = info[0].As<Napi::Boolean>().Value();
  local_ip_ = info[1].As<Napi::Number>().Uint32Value();
  freshness_seconds_ = info[2].As<Napi::Number>().Uint32Value();
  // Start above anything an earlier daemon on this node can have sent within this second.
  counter_ = ((UnixSeconds() + 1) << kCounterSecondShift) - 1;
}

PacketSealer::~PacketSealer() { FreeKeys(); }

void PacketSealer::FreeKeys() {
  for (Key& key : keys_) {
    EVP_CIPHER_CTX_free(key.seal);
    EVP_CIPHER_CTX_free(key.open);
  }
  keys_.clear();
}

// setKeys(keys: Buffer[], ids: number[]): keys[0] seals from now on; every one of them opens.
Napi::Value PacketSealer::SetKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "setKeys(keys, ids)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto keys = info[0].As<Napi::Array>();
  auto ids = info[1].As<Napi::Array>();
  if (keys.Length() == 0 || keys.Length() != ids.Length()) {
    Napi::TypeError::New(env, "setKeys: one id per key, at least one key").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<Key> next;
  for (uint32_t i = 0; i < keys.Length(); i++) {
    Napi::Value key = keys.Get(i);
    if (!key.IsBuffer() || key.As<Napi::Buffer<uint8_t>>().Length() != kKeyLen) {
      Napi::TypeError::New(env, "setKeys: each key is 32 bytes").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const uint8_t* bytes = key.As<Napi::Buffer<uint8_t>>().Data();
    Key k{static_cast<uint8_t>(ids.Get(i).As<Napi::Number>().Uint32Value()), NewContext(bytes, true), NewContext(bytes, false)};
    next.push_back(k);
    if (k.seal == nullptr || k.open == nullptr) {
      for (Key& made : next) {
        EVP_CIPHER_CTX_free(made.seal);
        EVP_CIPHER_CTX_free(made.open);
      }
      Napi::Error::New(env, "setKeys: OpenSSL has no AES-256-GCM").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  FreeKeys();
  keys_ = std::move(next);
  return env.Undefined();
}

uint64_t PacketSealer::NextCounter() {
  uint64_t clock = UnixSeconds() << kCounterSecondShift;
  counter_ = counter_ + 1 > clock ? counter_ + 1 : clock;
  return counter_;
}

// seal(src, srcOffset, length, dst, dstOffset): the sealed datagram's length, written at dst[dstOffset..].
Napi::Value PacketSealer::Seal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* src;
  uint8_t* dst;
  size_t src_offset, length, dst_offset, dst_room;
  if (info.Length() < 5 || !Range(info, 0, &src, &src_offset, &length) || !info[3].IsBuffer() || !info[4].IsNumber()) {
    Napi::TypeError::New(env, "seal(src, srcOffset, length, dst, dstOffset)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto dst_buffer = info[3].As<Napi::Buffer<uint8_t>>();
  dst = dst_buffer.Data();
  dst_offset = info[4].As<Napi::Number>().Uint32Value();
  dst_room = dst_offset <= dst_buffer.Length() ? dst_buffer.Length() - dst_offset : 0;
  if (dst_room < kHeaderLen + length + kTagLen || keys_.empty()) {
    Napi::RangeError::New(env, "seal: no room for the sealed datagram, or no key").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Key& key = keys_[0];
  uint8_t* out = dst + dst_offset;
  const uint8_t* packet = src + src_offset;
  out[0] = encrypt_ ? kMagicEncrypt : kMagicMac;
  out[1] = key.id;
  Store64(out + 2, NextCounter());
  uint8_t nonce[kNonceLen];
  MakeNonce(nonce, local_ip_, out + 2);
  int n = 0;
  EVP_CIPHER_CTX* ctx = key.seal;
  bool ok = EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) == 1 &&
            EVP_EncryptUpdate(ctx, nullptr, &n, out, kHeaderLen) == 1;
  if (encrypt_) {
    ok = ok && EVP_EncryptUpdate(ctx, out + kHeaderLen, &n, packet, static_cast<int>(length)) == 1;
  } else {
    ok = ok && EVP_EncryptUpdate(ctx, nullptr, &n, packet, static_cast<int>(length)) == 1;
    std::memmove(out + kHeaderLen, packet, length);
  }
  ok = ok && EVP_EncryptFinal_ex(ctx, out + kHeaderLen + length, &n) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagLen, out + kHeaderLen + length) == 1;
  if (!ok) {
    Napi::Error::New(env, "seal: AES-256-GCM failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(kHeaderLen + length + kTagLen));
}

// open(buffer, offset, length, senderIp): the packet's length, in clear at
// buffer[offset + 10..], or kUnauthenticated / kReplayed.
Napi::Value PacketSealer::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t offset, length;
  if (info.Length() < 4 || !Range(info, 0, &data, &offset, &length) || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "open(buffer, offset, length, senderIp)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t sender_ip = info[3].As<Napi::Number>().Uint32Value();
  uint8_t* in = data + offset;
  auto verdict = [&](int value) { return Napi::Number::New(env, value); };
  // Only the mode this node runs accepts: a peer cannot downgrade encryption to clear text.
  if (length < kHeaderLen + kTagLen || in[0] != (encrypt_ ? kMagicEncrypt : kMagicMac)) return verdict(kUnauthenticated);
  const Key* key = nullptr;
  for (const Key& k : keys_) {
    if (k.id == in[1]) key = &k;
  }
  if (key == nullptr) return verdict(kUnauthenticated);
  size_t packet_length = length - kHeaderLen - kTagLen;
  uint8_t* packet = in + kHeaderLen;
  uint8_t nonce[kNonceLen];
  MakeNonce(nonce, sender_ip, in + 2);
  // The tag is checked over a copy kept aside: decryption in place overwrites nothing it needs.
  uint8_t tag[kTagLen];
  std::memcpy(tag, packet + packet_length, kTagLen);
  EVP_CIPHER_CTX* ctx = key->open;
  int n = 0;
  bool ok = EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &n, in, kHeaderLen) == 1;
  ok = ok && (encrypt_ ? EVP_DecryptUpdate(ctx, packet, &n, packet, static_cast<int>(packet_length))
                       : EVP_DecryptUpdate(ctx, nullptr, &n, packet, static_cast<int>(packet_length))) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagLen, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx, packet + packet_length, &n) == 1;
  if (!ok) return verdict(kUnauthenticated);
  uint64_t counter = Load64(in + 2);
  uint64_t sealed_at = counter >> kCounterSecondShift;
  uint64_t now = UnixSeconds();
  bool fresh = sealed_at + freshness_seconds_ >= now && sealed_at <= now + freshness_seconds_;
  if (!fresh || !windows_[sender_ip].CheckAndSet(counter)) return verdict(kReplayed);
  return verdict(static_cast<int>(packet_length));
}

}  // namespace miniflannel
