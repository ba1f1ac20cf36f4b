// The one reading of a --device value (flag or recipe key) for every command.
#pragma once
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace cotune::cli {

// "cpu", "cuda" or "auto" (cuda when a GPU is visible, else cpu). `what` names the flag or key in errors.
Device parse_device(const std::string& value, std::string_view what = "--device");

}  // namespace cotune::cli
