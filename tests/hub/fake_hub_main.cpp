// fake_hub: the tests' loopback Hub as a program, for tools/ scripts (huggingface_hub with HF_ENDPOINT) and the
// end-to-end CTest. Serves folders as repos until SIGINT / SIGTERM:
//   fake_hub --port-file F [--token T] [--model org/name=DIR]... [--dataset org/name=DIR]...
//            [--dataset-ref org/name@refs/convert/parquet=DIR]... [--page-size N] [--multipart BYTES:CHUNK]
// Writes the endpoint (http://127.0.0.1:PORT) to F once listening; every file under DIR becomes a repo file.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>

#include "fake_hub.h"

namespace fs = std::filesystem;

namespace {
std::map<std::string, std::string> read_tree(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    files[fs::relative(e.path(), dir).generic_string()] =
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  return files;
}
int usage(const std::string& why) {
  std::cerr << "fake_hub: " << why << "\nusage: fake_hub --port-file F [--token T] [--model org/name=DIR] "
               "[--dataset org/name=DIR] [--dataset-ref org/name@REF=DIR] [--page-size N] [--multipart BYTES:CHUNK]\n";
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the server threads inherit the mask; main waits below

  cotune::testing::FakeHub hub;
  std::string port_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage("missing value after " + a);
    const std::string v = argv[++i];
    const auto eq = v.find('=');
    if (a == "--port-file") {
      port_file = v;
    } else if (a == "--token") {
      hub.set_token(v);
    } else if (a == "--page-size") {
      hub.set_page_size(std::stoi(v));
    } else if (a == "--multipart") {
      const auto colon = v.find(':');
      if (colon == std::string::npos) return usage("--multipart wants BYTES:CHUNK");
      hub.set_multipart_threshold(std::stoll(v.substr(0, colon)), std::stoll(v.substr(colon + 1)));
    } else if ((a == "--model" || a == "--dataset") && eq != std::string::npos) {
      const fs::path dir = v.substr(eq + 1);
      if (!fs::is_directory(dir)) return usage(dir.string() + " is not a folder");
      hub.commit(a == "--model" ? "model" : "dataset", v.substr(0, eq), "main", read_tree(dir));
    } else if (a == "--dataset-ref" && eq != std::string::npos) {
      const std::string spec = v.substr(0, eq);
      const auto at = spec.find('@');
      if (at == std::string::npos) return usage("--dataset-ref wants org/name@REF=DIR");
      hub.commit("dataset", spec.substr(0, at), spec.substr(at + 1), read_tree(v.substr(eq + 1)));
    } else {
      return usage("unknown argument " + a);
    }
  }
  if (port_file.empty()) return usage("--port-file is required");
  {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << hub.endpoint() << "\n";
    fs::rename(tmp, port_file);
  }
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
