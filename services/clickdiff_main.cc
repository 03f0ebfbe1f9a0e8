#include <iostream>

#include "services/cli.h"

int main(int argc, char** argv) { return clickdiff::RunCli(argc, argv, std::cout, std::cerr); }
