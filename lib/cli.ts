// Moved to cmd/mailplane.ts; kept for one release for scripts that call it by path.
import '../cmd/mailplane.js';
