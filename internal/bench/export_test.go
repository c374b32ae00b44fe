package bench

// ReadHead is readHead, for the tests.
var ReadHead = readHead
