// Subcommand registry: each cmd_*.cpp registers itself with COTUNE_COMMAND, so adding a subcommand
// touches no shared file. `setup` adds the subcommand's options to its CLI11 app and sets its callback.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace cotune::cli {

struct Command {
  std::string name;
  std::string help;
  int order;  // position in --help (pipeline order)
  void (*setup)(CLI::App& app);
};

std::vector<Command>& commands();

struct Registrar {
  Registrar(std::string name, std::string help, int order, void (*setup)(CLI::App&)) {
    commands().push_back(Command{std::move(name), std::move(help), order, setup});
  }
};

}  // namespace cotune::cli

#define COTUNE_COMMAND(ident, name, help, order, setup_fn) \
  static ::cotune::cli::Registrar cotune_command_##ident(name, help, order, setup_fn)
