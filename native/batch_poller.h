// BatchPoller: watches a non-blocking fd on the Node event loop (uv_poll,
// level-triggered) and, on each wake-up, lets its owner drain up to a batch
// of packets, then makes one JS call: onBatch(count, errno).
//
// While polling it pins the owner's JS object and the arrays the owner reads
// into, so none of them is collected while packets still arrive.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

namespace miniflannel {

class BatchPoller {
 public:
  // Reads what is ready, up to a batch; returns the count and sets *error
  // to an errno for a failure that should end polling.
  using Drain = size_t (*)(void* owner, int* error);

  BatchPoller(Napi::Env env, const char* resource_name);
  ~BatchPoller();

  // Returns 0, or a libuv error code.
  int Start(int fd, Napi::Object owner_object, void* owner, Drain drain, Napi::Function on_batch,
            std::initializer_list<Napi::Value> pinned);
  void Stop();
  bool active() const { return poll_ != nullptr; }

 private:
  static void OnReadable(uv_poll_t* handle, int status, int events);
  void Wake(int status);

  Napi::Env env_;
  Napi::AsyncContext async_context_;
  uv_poll_t* poll_ = nullptr;
  void* owner_ = nullptr;
  Drain drain_ = nullptr;
  Napi::ObjectReference owner_object_;
  Napi::FunctionReference on_batch_;
  std::vector<Napi::Reference<Napi::Value>> pinned_;
};

}  // namespace miniflannel
