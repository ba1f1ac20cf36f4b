// Issue 14 item 11: cotune never destroys what the user has. Output folders are replaced only when they
// hold what cotune writes there; non-regular files (FIFOs) given as input are refused instead of blocking;
// JSON syntax errors give line and column.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_error.h"
#include "base/mmap.h"

namespace cotune {
namespace {

namespace fs = std::filesystem;

class Scratch {
 public:
  Scratch() {
    std::string t = (fs::temp_directory_path() / "cotune-fs-XXXXXX").string();
    if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp");
    dir_ = t;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& text) const {
    fs::create_directories(fs::path(path(name)).parent_path());
    std::ofstream(path(name)) << text;
  }

 private:
  fs::path dir_;
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NameMatches, ExactAndStars) {
  EXPECT_TRUE(name_matches("checkpoint-3.tmp-123", "checkpoint-*.tmp-*"));
  EXPECT_FALSE(name_matches("checkpoint-3", "checkpoint-*.tmp-*"));
  EXPECT_TRUE(name_matches("a", "*"));
  EXPECT_TRUE(name_matches("", "*"));
  EXPECT_FALSE(name_matches("", "a*"));
  EXPECT_TRUE(name_matches("aXbXc", "a*c"));
  EXPECT_TRUE(name_matches("config.json", "config.json"));
  EXPECT_FALSE(name_matches("config.json.bak", "config.json"));
  EXPECT_TRUE(name_matches("model-00001-of-00002.safetensors", "model-*.safetensors"));
  EXPECT_FALSE(name_matches("model-1.bin", "model-*.safetensors"));
  EXPECT_TRUE(name_matches("checkpoint-12", "checkpoint-*"));
  EXPECT_FALSE(name_matches("m.safetensors", "model*.safetensors"));
}

TEST(ReplaceDirectory, ReplacesAFolderCotuneWrote) {
  Scratch s;
  s.write("out/config.json", "old");
  s.write("out/model-00001-of-00002.safetensors", "old shard");
  s.write("new/config.json", "new");
  replace_directory(s.path("new"), s.path("out"), kModelFolder);
  EXPECT_FALSE(fs::exists(s.path("new")));
  EXPECT_FALSE(fs::exists(s.path("out/model-00001-of-00002.safetensors")));
  std::ifstream in(s.path("out/config.json"));
  std::string text;
  in >> text;
  EXPECT_EQ(text, "new");
}

TEST(ReplaceDirectory, RefusesARegularFileAndLeavesIt) {
  Scratch s;
  s.write("notes.txt", "precious");
  s.write("new/config.json", "new");
  const std::string msg = error_of([&] { replace_directory(s.path("new"), s.path("notes.txt"), kModelFolder); });
  EXPECT_NE(msg.find(s.path("notes.txt")), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a folder"), std::string::npos) << msg;
  EXPECT_TRUE(fs::is_regular_file(s.path("notes.txt")));
}

TEST(ReplaceDirectory, RefusesAFolderOfUnrelatedFilesAndLeavesIt) {
  Scratch s;
  s.write("home/thesis.tex", "precious");
  s.write("home/config.json", "x");
  s.write("new/config.json", "new");
  const std::string msg = error_of([&] { replace_directory(s.path("new"), s.path("home"), kModelFolder); });
  EXPECT_NE(msg.find("thesis.tex"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did not write"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(s.path("home/thesis.tex")));
  EXPECT_TRUE(fs::exists(s.path("new/config.json")));  // the caller cleans its temp folder
  // An adapter folder is not a model folder's place, and the reverse.
  s.write("adapter/adapter_model.safetensors", "a");
  EXPECT_NE(error_of([&] { require_replaceable_directory(s.path("adapter"), kModelFolder); }), "");
  EXPECT_EQ(error_of([&] { require_replaceable_directory(s.path("adapter"), kAdapterFolder); }), "");
  EXPECT_EQ(error_of([&] { require_replaceable_directory(s.path("absent"), kAdapterFolder); }), "");
}

TEST(ReadFile, RefusesAFifoInsteadOfBlocking) {
  Scratch s;
  ASSERT_EQ(::mkfifo(s.path("config.json").c_str(), 0600), 0);
  const std::string msg = error_of([&] { read_file(s.path("config.json")); });
  EXPECT_NE(msg.find(s.path("config.json")), std::string::npos) << msg;
  EXPECT_NE(msg.find("a FIFO"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { MappedFile m(s.path("config.json")); }).find("a FIFO"), std::string::npos);
  EXPECT_NE(error_of([&] { read_file(s.path("")); }).find("a folder"), std::string::npos);
}

TEST(JsonSyntaxError, NamesLineAndColumn) {
  EXPECT_EQ(json_syntax_error(R"({"a": [1, 2]})"), "");
  const std::string e = json_syntax_error("{\n  \"a\": 1,\n  \"b\": tru\n}");
  EXPECT_EQ(e.rfind("line 3, column ", 0), 0u) << e;
  EXPECT_EQ(json_syntax_error("{\"a\": 1,}").rfind("line 1, column 9: ", 0), 0u) << json_syntax_error("{\"a\": 1,}");
  EXPECT_EQ(text_position("ab\ncd", 4), "line 2, column 2");
  EXPECT_EQ(text_position("", 0), "line 1, column 1");
}

}  // namespace
}  // namespace cotune
