// The scheduling priority of background threads.
#pragma once

namespace scribefs {

// Makes the calling thread's niceness `nice` (0-19; 0 leaves it as it is).
// On Linux niceness is per thread, and threads it starts inherit it. Any
// process may lower its own priority, so this fails only on a bad value; a
// failure is logged once and the thread runs on as it was.
void SetThisThreadNice(int nice);

}  // namespace scribefs
