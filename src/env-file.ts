/**
 * Reads `.env` from the working directory into process.env when the file exists. A variable already set in
 * the environment keeps its value (Node's loader never overwrites one), so the environment takes precedence.
 */
export function loadEnvFile(file = ".env"): boolean {
  try {
    process.loadEnvFile(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
