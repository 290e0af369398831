{
  "targets": [
    {
      "target_name": "miniflannel_native",
      "sources": ["native/addon.cc", "native/batch_poller.cc", "native/errors.cc", "native/netlink.cc", "native/offload.cc", "native/packet_sealer.cc", "native/tun_device.cc", "native/udp_socket.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
