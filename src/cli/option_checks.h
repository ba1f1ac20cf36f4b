// CLI11 checks for the flags of commands without a recipe, as strict as the recipe keys (recipe.h): CLI11 alone
// turns "-1" into 18446744073709551615 for an unsigned option and takes "nan" for a float.
//
//   app.add_option("--seed", seed, "Sampling seed")->check(unsigned_integer());
//   app.add_option("--temperature", t, "...")->check(finite_number());
#pragma once
#include <CLI/CLI.hpp>

#include "cli/recipe.h"

namespace cotune::cli {

inline CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          (void)parse_uint64(s, "value");
        } catch (const std::exception& e) {
          return std::string(e.what()).substr(std::string("value: ").size());
        }
        return {};
      },
      "UINT");
}

inline CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          (void)parse_finite(s, "value");
        } catch (const std::exception& e) {
          return std::string(e.what()).substr(std::string("value: ").size());
        }
        return {};
      },
      "FLOAT");
}

}  // namespace cotune::cli
