// Text from files (tensor names, metadata values, the TFLite library's messages) is shown to
// users in one-line errors and listings: escape anything that could break the line or drive
// the terminal.
#ifndef TFLITE_TRANSFER_TEXT_H_
#define TFLITE_TRANSFER_TEXT_H_

#include <string>
#include <string_view>

namespace tflite_transfer {

// `text` with control characters (C0, DEL, C1), invalid UTF-8 bytes and the Unicode line,
// paragraph and bidirectional-override characters written as \xNN per byte; printable ASCII
// and other valid UTF-8 are kept. Applying it twice gives the same result as once.
std::string Printable(std::string_view text);

// 'text', escaped by Printable: how messages quote names.
std::string Quoted(std::string_view text);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_TEXT_H_
