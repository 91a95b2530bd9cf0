{
  "targets": [
    {
      "target_name": "pagewise",
      "sources": [
        "native/addon.cc",
        "native/bind_system.cc",
        "native/bind_elementwise.cc",
        "native/bind_linear.cc",
        "native/bind_kv.cc",
        "native/bind_attention.cc",
        "native/bind_activation.cc",
        "native/bind_sampling.cc",
        "native/cpu.cc",
        "native/scratch.cc",
        "native/amx.cc",
        "native/threadpool.cc",
        "native/ops_linear.cc",
        "native/ops_linear_packed.cc",
        "native/ops_linear_amx.cc",
        "native/ops_elementwise.cc",
        "native/ops_attention.cc",
        "native/ops_activation.cc",
        "native/kv_cache.cc",
        "native/microbench.cc",
        "native/ops_sampling.cc",
        "native/quant/quantize.cc",
        "native/quant/bind_quantize.cc",
        "native/quant/decode.cc",
        "native/quant/linear.cc",
        "native/quant/rows_fast.cc",
        "native/quant/rows_neon.cc",
        "native/quant/rows_amx.cc",
        "native/quant/bind_quant.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS_ALL", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-Wall", "-Wno-uninitialized", "-Wno-maybe-uninitialized", "-ffp-contract=off"],
      "cflags": ["-O3", "-ffp-contract=off"],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
            "GCC_OPTIMIZATION_LEVEL": "3",
            "OTHER_CFLAGS": ["-ffp-contract=off"],
            "OTHER_CPLUSPLUSFLAGS": ["-fno-math-errno", "-ffp-contract=off", "-Wall"]
          }
        }]
      ]
    }
  ]
}
