#include "batch_poller.h"

namespace miniflannel {

BatchPoller::BatchPoller(Napi::Env env, const char* resource_name)
    : env_(env), async_context_(env, resource_name) {}

BatchPoller::~BatchPoller() { Stop(); }

int BatchPoller::Start(int fd, Napi::Object owner_object, void* owner, Drain drain, Napi::Function on_batch,
                       std::initializer_list<Napi::Value> pinned) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env_, &loop) != napi_ok) return UV_EINVAL;
  auto* poll = new uv_poll_t;
  if (int err = uv_poll_init(loop, poll, fd)) {
    delete poll;
    return err;
  }
  poll->data = this;
  poll_ = poll;
  owner_ = owner;
  drain_ = drain;
  owner_object_ = Napi::Persistent(owner_object);
  on_batch_ = Napi::Persistent(on_batch);
  for (const auto& value : pinned) pinned_.push_back(Napi::Persistent(value));
  return uv_poll_start(poll_, UV_READABLE, &BatchPoller::OnReadable);
}

void BatchPoller::OnReadable(uv_poll_t* handle, int status, int events) {
  static_cast<BatchPoller*>(handle->data)->Wake(status);
}

void BatchPoller::Wake(int status) {
  int error = status < 0 ? -status : 0;
  size_t count = error == 0 ? drain_(owner_, &error) : 0;
  if (count == 0 && error == 0) return;

  Napi::HandleScope scope(env_);
  // Held in this scope: the callback may stop the poller, which drops the references.
  Napi::Function on_batch = on_batch_.Value();
  Napi::Object receiver = owner_object_.Value();
  napi_value args[2] = {Napi::Number::New(env_, static_cast<double>(count)), Napi::Number::New(env_, -error)};
  napi_value result;
  napi_status call = napi_make_callback(env_, async_context_, receiver, on_batch, 2, args, &result);
  // A hard error would make a level-triggered poll spin, so polling ends here.
  if (error != 0) Stop();
  if (call == napi_pending_exception) {
    napi_value exception;
    napi_get_and_clear_last_exception(env_, &exception);
    napi_fatal_exception(env_, exception);
  }
}

void BatchPoller::Stop() {
  if (poll_ == nullptr) return;
  uv_poll_stop(poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
  on_batch_.Reset();
  owner_object_.Reset();
  pinned_.clear();
}

}  // namespace miniflannel
