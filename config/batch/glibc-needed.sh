#!/usr/bin/env bash
# Prints the highest GLIBC symbol version an ELF binary needs (e.g. 2.34), from its dynamic
# symbol table. Used by package.sh and tests/lean_binary.rs.
set -euo pipefail
objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1
