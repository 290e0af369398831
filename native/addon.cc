#include <napi.h>

#include "tun_device.h"
#include "udp_socket.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  miniflannel::TunDevice::Init(env, exports);
  miniflannel::UdpSocket::Init(env, exports);
  return exports;
}

NODE_API_MODULE(miniflannel_native, Init)
