# Writes OUT (version.h): the project version and the commit the build was made from (`git describe`, with
# -dirty for uncommitted changes; "unknown" outside a git checkout). Run at every build, so the commit
# follows the tree; the header is only replaced when it changes, so nothing recompiles otherwise.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE failed)
if(failed OR commit STREQUAL "")
  set(commit "unknown")
endif()
file(WRITE "${OUT}.tmp" "#pragma once\n#define FRAMECERT_VERSION \"${VERSION}\"\n#define FRAMECERT_COMMIT \"${commit}\"\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
