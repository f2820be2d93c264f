{
  "targets": [
    {
      "target_name": "ambit_sys",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/netns.cc",
        "native/poller.cc",
        "native/seqpacket.cc",
        "native/tcp.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wextra"]
    }
  ]
}
