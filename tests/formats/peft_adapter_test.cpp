// adapter_config.json: every error names the file and the field; sizes are bounded (issue 14 item 11).
#include "formats/peft_adapter.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

std::string load_error(const std::string& json) {
  test::TempDir dir;
  test::write_bytes(dir / "adapter_config.json", json);
  try {
    load_peft_adapter_config(dir.path().string());
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir / "adapter_config.json"), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "accepted: " << json;
  return "";
}

TEST(PeftAdapterConfig, ReadsAValidConfig) {
  test::TempDir dir;
  test::write_bytes(dir / "adapter_config.json",
                    R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "use_rslora": true,
                        "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": null, "bias": "none"})");
  const PeftAdapterConfig c = load_peft_adapter_config(dir.path().string());
  EXPECT_EQ(c.r, 8);
  EXPECT_DOUBLE_EQ(c.lora_alpha, 16);
  EXPECT_TRUE(c.use_rslora);
  EXPECT_EQ(c.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(c.base_model_name_or_path.has_value());
}

TEST(PeftAdapterConfig, RankIsBoundedNotNarrowed) {
  // 4294967312 = 2^32 + 16 used to be read as int and become r = 16.
  EXPECT_NE(load_error(R"({"r": 4294967312, "target_modules": ["q_proj"]})").find("\"r\" is 4294967312"), std::string::npos);
  EXPECT_NE(load_error(R"({"r": 0, "target_modules": ["q_proj"]})").find("[1, 65536]"), std::string::npos);
  EXPECT_NE(load_error(R"({"r": -3, "target_modules": ["q_proj"]})").find("\"r\" is -3"), std::string::npos);
  EXPECT_NE(load_error(R"({"r": 8.5, "target_modules": ["q_proj"]})").find("field \"r\" must be a positive integer"),
            std::string::npos);
}

TEST(PeftAdapterConfig, TypeErrorsNameTheField) {
  EXPECT_NE(load_error(R"({"r": 8, "lora_alpha": "16", "target_modules": ["q_proj"]})")
                .find("field \"lora_alpha\" must be a number, found a string"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"r": 8, "use_rslora": 1, "target_modules": ["q_proj"]})").find("field \"use_rslora\""),
            std::string::npos);
  EXPECT_NE(load_error(R"({"r": 8, "target_modules": ["q_proj", 3]})").find("field \"target_modules\""),
            std::string::npos);
  EXPECT_NE(load_error(R"({"r": 8, "bias": false, "target_modules": ["q_proj"]})").find("field \"bias\""),
            std::string::npos);
  EXPECT_NE(load_error(R"({"r": 8, "lora_dropout": 1.5, "target_modules": ["q_proj"]})").find("\"lora_dropout\""),
            std::string::npos);
}

TEST(PeftAdapterConfig, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_NE(load_error("{\n  \"r\": 8,\n  \"target_modules\": [\"q_proj\"\n}").find("line 4, column 1"), std::string::npos);
}

}  // namespace
}  // namespace cotune::formats
