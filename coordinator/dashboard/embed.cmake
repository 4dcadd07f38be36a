# dashboard/embed.cmake: turns the dashboard's files into a C source (cmake -P, at build time):
#   cmake -DOUT=dash_assets.c -DFILES="a|b" -DHDR=.../coord_dash.h -P embed.cmake
# Each file becomes a NUL-terminated byte array and an entry of dash_assets[] (coord_dash.c),
# so the coordinator serves its dashboard without reading anything from disk.
string(REPLACE "|" ";" FILES "${FILES}")
set(body "/* Generated from coordinator/dashboard/ by embed.cmake: do not edit. */\n")
string(APPEND body "#include <stddef.h>\n#include \"${HDR}\"\n\n")
set(table "const struct dash_asset dash_assets[] = {\n")
set(i 0)
foreach(f ${FILES})
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
  get_filename_component(name ${f} NAME)
  string(APPEND body "static const unsigned char a${i}[] = {\n${bytes}0x00};\n")
  string(APPEND table "    {\"${name}\", a${i}, ${len}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "    {NULL, NULL, 0}};\n")
file(WRITE ${OUT}.tmp "${body}\n${table}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
