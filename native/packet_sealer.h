// PacketSealer: opt-in authenticated encapsulation (--auth-key-file).
//
// A sealed datagram is the bare IP packet framed by a 10-byte header and a
// 16-byte AES-256-GCM tag:
//
//   0        1        2                      10               10+n      26+n
//   | magic  | key id | counter (64-bit BE)  | packet (n)     | tag (16) |
//
//   magic 0xA1: the packet travels in clear and is authenticated (GMAC over
//               header and packet); 0xA2: the packet is encrypted.
//   nonce = sender's underlay IPv4 (4) || counter (8): unique per sender
//           because each sender's counter only grows, and it binds the
//           datagram to the address it must come from.
//   counter = max(previous + 1, unix_seconds << 23): it follows the clock,
//           so a restarted daemon continues above what it sent before, and
//           its top bits say when the datagram was sealed.
//
// Opening checks the tag, that the counter's time is within the freshness
// window of our clock, and that the counter was not seen before from that
// sender (a 2048-entry sliding window per sender, as IPsec and WireGuard do).
// The crypto is the OpenSSL inside Node, reached through its exported EVP
// symbols: AES-NI and carry-less multiply make it cost less than the copy.
#pragma once

#include <napi.h>
#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace miniflannel {

class PacketSealer : public Napi::ObjectWrap<PacketSealer> {
 public:
  static constexpr size_t kHeaderLen = 10;
  static constexpr size_t kTagLen = 16;
  static constexpr int kUnauthenticated = -1;
  static constexpr int kReplayed = -2;

  static void Init(Napi::Env env, Napi::Object exports);
  explicit PacketSealer(const Napi::CallbackInfo& info);
  ~PacketSealer() override;

 private:
  struct Key {
    uint8_t id;
    EVP_CIPHER_CTX* seal;
    EVP_CIPHER_CTX* open;
  };
  // Counters seen from one sender: the highest, and which of the last kWindowBits below it.
  struct ReplayWindow {
    static constexpr uint64_t kWindowBits = 2048;
    uint64_t top = 0;
    std::array<uint64_t, kWindowBits / 64> seen{};
    bool CheckAndSet(uint64_t counter);
  };

  Napi::Value SetKeys(const Napi::CallbackInfo& info);
  Napi::Value Seal(const Napi::CallbackInfo& info);
  Napi::Value Open(const Napi::CallbackInfo& info);

  void FreeKeys();
  uint64_t NextCounter();

  bool encrypt_ = false;
  uint32_t local_ip_ = 0;
  uint64_t freshness_seconds_ = 0;
  uint64_t counter_ = 0;
  std::vector<Key> keys_;  // keys_[0] seals; every key opens
  std::unordered_map<uint32_t, ReplayWindow> windows_;
};

}  // namespace miniflannel
