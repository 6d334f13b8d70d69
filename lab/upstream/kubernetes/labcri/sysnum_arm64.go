package main

// sysSetns is setns(2), which the syscall package does not name.
const sysSetns = 268
