/* The search form: an image can be chosen, dropped or pasted (it then fills the file field), or
 * given by URL; with either, the form is posted as multipart to /search (POST). Words alone use
 * GET, so that result pages can be bookmarked. */
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  if (!form) {
    return;
  }
  var fileInput = document.getElementById("image");
  var urlInput = document.getElementById("image-url");
  var preview = document.getElementById("image-preview");
  var dropZone = document.getElementById("drop-zone");
  var details = document.getElementById("image-query");
  var query = document.getElementById("q");

  function showPreview(file) {
    if (!preview || !file) {
      return;
    }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    if (details) {
      details.open = true;
    }
  }

  function useFile(file) {
    if (!file || !/^image\//.test(file.type)) {
      return false;
    }
    var transfer = new DataTransfer();
    transfer.items.add(file);
    fileInput.files = transfer.files;
    showPreview(file);
    return true;
  }

  if (fileInput) {
    fileInput.addEventListener("change", function () {
      showPreview(fileInput.files && fileInput.files[0]);
    });
  }

  document.addEventListener("paste", function (event) {
    var items = (event.clipboardData && event.clipboardData.files) || [];
    for (var i = 0; i < items.length; i += 1) {
      if (useFile(items[i])) {
        event.preventDefault();
        return;
      }
    }
  });

  if (dropZone) {
    ["dragenter", "dragover"].forEach(function (name) {
      dropZone.addEventListener(name, function (event) {
        event.preventDefault();
        dropZone.classList.add("drop-zone--active");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      dropZone.addEventListener(name, function () {
        dropZone.classList.remove("drop-zone--active");
      });
    });
    dropZone.addEventListener("drop", function (event) {
      event.preventDefault();
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) {
        useFile(files[0]);
      }
    });
    dropZone.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        fileInput.click();
      }
    });
  }

  form.addEventListener("submit", function (event) {
    var hasFile = fileInput && fileInput.files && fileInput.files.length > 0;
    var hasUrl = urlInput && urlInput.value.trim() !== "";
    if (hasFile || hasUrl) {
      form.method = "post";
      form.enctype = "multipart/form-data";
      form.action = form.getAttribute("data-image-action");
    } else if (!query.value.trim()) {
      event.preventDefault();
      query.focus();
    }
  });
})();
